"""A session digest: the text, tags and metadata of the one `session` memory a session's hooks keep.

The text (what a later session's search finds) has, in this order: a head line (the Claude Code session
id, its git branch and the time span of the transcript), what the user asked (each prompt trimmed), the
files the session changed (paths relative to the session's folder), the commands that failed and then
passed (and the ones still failing), the agent's last message, and Claude Code's own compaction
summary (the newest one; written and paid for by the session already). No model is called.

Guarantees: the same record and inputs give the same text, byte for byte (so a repeated hook is a
duplicate, never a second memory; the hook event and the time of capture are in the metadata, not the
text); the text fits `max_bytes` UTF-8 bytes (sections are trimmed, halving their limits until it fits,
then cut: never an error for size); `<private>` parts of every piece are removed before any trimming
(a trim can never cut a closing tag off and leave a secret behind); tags are the plain `session-digest`
and `claude-code` plus the changed files' names (at most `MAX_TAGS`, each a valid tag).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from clarity.capture.transcript import COMPACT_PREAMBLE, SessionRecord
from clarity.memory.privacy import strip_private

DIGEST_TYPE = "session"
DIGEST_TAG = "session-digest"
SOURCE_TAG = "claude-code"
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_META_PATHS = 100  # with MAX_META_PATH_CHARS: the metadata stays far under its 64 KiB limit
MAX_META_PATH_CHARS = 300


@dataclass(frozen=True)
class Limits:
    """How much of each section goes in; `halved()` is the next, smaller try."""

    prompt_chars: int = 600
    prompts: int = 40
    files: int = 80
    commands: int = 20
    command_chars: int = 300
    last_chars: int = 4000
    compact_chars: int = 16000

    def halved(self) -> Limits:
        return Limits(*(max(1, v // 2) for v in (self.prompt_chars, self.prompts, self.files, self.commands,
                                                 self.command_chars, self.last_chars, self.compact_chars)))


@dataclass
class Digest:
    content: str
    tags: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """`text` without its private parts and without control characters (an ANSI escape in a command
    would make the store refuse the whole digest)."""
    return _CONTROL.sub("", strip_private(text)).strip()


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(0, limit - 1)].rstrip() + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _relative(path: str, cwd: str) -> str:
    if cwd and os.path.isabs(path) and os.path.isabs(cwd):
        rel = os.path.relpath(path, cwd)
        if not rel.startswith(".."):
            return rel
    return path


def _head_and_tail(items: list[str], n: int) -> tuple[list[str], int]:
    """At most `n` of `items`: the first quarter and the rest from the end; and how many were left out."""
    if len(items) <= n:
        return items, 0
    first = max(1, n // 4)
    return items[:first] + items[len(items) - (n - first):], len(items) - n


# Claude Code's words to the model around a compaction summary (2.1.x): where the instructions after the
# summary begin; they are not the session's and must not be stored as if they were an agent's instructions
_COMPACT_TAILS = ("If you need specific details from before compaction",
                  "Continue the conversation from where it left off",
                  "The messages after this summary are the most recent messages")
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_ANALYSIS = re.compile(r"<analysis>.*?</analysis>", re.DOTALL)  # the model's scratch work before its summary
_SUMMARY = re.compile(r"<summary>(.*?)</summary>", re.DOTALL)


def _compact_text(summary: str) -> str:
    """A compaction summary as the transcript has it (Claude Code's opening sentence, system reminders,
    `Summary:`, the summary, closing instructions to the model) or as PostCompact's input has it (the
    model's `<analysis>` then `<summary>`): the summary alone, so both forms give the same text."""
    text = _ANALYSIS.sub("", _REMINDER.sub("", summary)).strip()
    inner = _SUMMARY.search(text)
    if inner is not None:
        text = inner.group(1).strip()
    if text.startswith(COMPACT_PREAMBLE):
        first_break = text.find("\n")
        text = text[first_break + 1:].strip() if first_break >= 0 else ""
    cut = min((i for i in (text.find(t) for t in _COMPACT_TAILS) if i >= 0), default=len(text))
    return text[:cut].strip().removeprefix("Summary:").strip()


def _text(rec: SessionRecord, session_id: str, last: str, compact: str, lim: Limits) -> str:
    span = f"{rec.started_at} to {rec.ended_at}" if rec.started_at else "time unknown"
    parts = [f"Claude Code session {session_id} on branch {rec.git_branch or '(none)'}, {span}."]
    titles = [t for t in (_clean(t) for t in rec.titles) if t]
    if titles:
        parts[0] += " Titled: " + "; ".join(_trim(_one_line(t), lim.prompt_chars) for t in titles[-3:])
    prompts = [p for p in (_clean(p) for p in rec.prompts) if p]
    if prompts:
        kept, left = _head_and_tail(prompts, lim.prompts)
        lines = [f"- {_trim(_one_line(p), lim.prompt_chars)}" for p in kept]
        if left:
            lines.insert(max(1, lim.prompts // 4), f"- ({left} more prompts)")
        parts.append("What the user asked:\n" + "\n".join(lines))
    files = [_clean(_relative(f.path, rec.cwd)) for f in rec.changed.values()]
    if files:
        counts = [f.tool_uses for f in rec.changed.values()]
        lines = [f"- {_one_line(p)}" + (f" ({n} edits)" if n > 1 else "")
                 for p, n in list(zip(files, counts, strict=True))[:lim.files] if p]
        if len(files) > lim.files:
            lines.append(f"- ({len(files) - lim.files} more files)")
        parts.append("Files changed:\n" + "\n".join(lines))
    for title, commands in (("Commands that failed, then passed", rec.fixed_commands),
                            ("Commands that failed (no later pass)", rec.failed_commands)):
        cleaned = [c for c in (_clean(c) for c in commands) if c]
        if cleaned:
            lines = [f"- {_trim(_one_line(c), lim.command_chars)}" for c in cleaned[-lim.commands:]]
            parts.append(f"{title}:\n" + "\n".join(lines))
    if last:
        parts.append("The agent's last message:\n" + _trim(last, lim.last_chars))
    if compact:
        parts.append("Claude Code's compaction summary:\n" + _trim(compact, lim.compact_chars))
    return "\n\n".join(parts)


def _cut_bytes(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max(0, max_bytes - 3)].decode("utf-8", errors="ignore") + "…"


def _tags(rec: SessionRecord) -> list[str]:
    tags = [DIGEST_TAG, SOURCE_TAG]
    for f in rec.changed.values():
        name = _clean(os.path.basename(f.path.rstrip("/")))
        if (name and len(name) <= MAX_TAG_CHARS and name.isprintable() and name not in tags
                and len(tags) < MAX_TAGS):
            tags.append(name)
    return tags


def build_digest(rec: SessionRecord, *, session_id: str, event: str, max_bytes: int,
                 last_message: str = "", compact_summary: str = "") -> Digest:
    """The digest of `rec` (the session `session_id`, as the hook input names it) for hook `event`;
    `last_message` / `compact_summary`: what the hook input carries (Stop's `last_assistant_message`,
    PostCompact's `compact_summary`), preferred to what the transcript has so far."""
    last = _clean(last_message) or _clean(rec.last_message)
    summaries = [s for s in (_compact_text(_clean(s)) for s in [*rec.compact_summaries, compact_summary]) if s]
    compact = summaries[-1] if summaries else ""
    lim = Limits()
    text = _text(rec, session_id, last, compact, lim)
    for _ in range(12):
        if len(text.encode("utf-8")) <= max_bytes:
            break
        lim = lim.halved()
        text = _text(rec, session_id, last, compact, lim)
    text = _cut_bytes(text, max_bytes)
    paths = [_trim(_one_line(_clean(_relative(f.path, rec.cwd))), MAX_META_PATH_CHARS)
             for f in rec.changed.values()][:MAX_META_PATHS]
    metadata: dict[str, Any] = {
        "claude_session_id": session_id, "git_branch": _one_line(_clean(rec.git_branch))[:200],
        "cwd": _trim(_one_line(_clean(rec.cwd)), MAX_META_PATH_CHARS),
        "started_at": _clean(rec.started_at)[:64], "ended_at": _clean(rec.ended_at)[:64], "event": event,
        "prompts": len(rec.prompts), "changed_files": [p for p in paths if p],
        "fixed_commands": len(rec.fixed_commands), "compactions": len(summaries),
        "claude_code_version": _one_line(_clean(rec.version))[:50], "transcript_lines": rec.lines,
        "transcript_truncated": rec.truncated,
    }
    return Digest(content=text, tags=_tags(rec), metadata=metadata)
