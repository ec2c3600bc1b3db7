"""A Claude Code session transcript (JSONL) read into a `SessionRecord`.

The format, as Claude Code writes it (`~/.claude/projects/<project>/<session>.jsonl`, one JSON object a
line; checked against the hook input schemas in Claude Code 2.1's own binary and against public
descriptions of recorded transcripts, not against a transcript recorded with a model):
- `{"type": "user", "message": {"role": "user", "content": "..." | [blocks]}, "sessionId", "cwd",
  "gitBranch", "timestamp", "uuid", "isSidechain", "isMeta"?, "isCompactSummary"?}`: a person's prompt
  (string content, or `text` blocks), the tool results (`tool_result` blocks: `tool_use_id`,
  `content`, `is_error`), or, with `isCompactSummary`, the summary a compaction wrote;
- `{"type": "assistant", "message": {"id", "content": [blocks]}}`: `text`, `thinking` and `tool_use`
  (`id`, `name`, `input`) blocks, often one block per line with the same `message.id`;
- `{"type": "system", "subtype": "compact_boundary", "compactMetadata": {"trigger", "preTokens"}}`;
- `{"type": "summary", "summary": "...", "leafUuid"}`: a title; Claude Code has written other
  sessions' titles into a transcript, so one counts only when its `leafUuid` is a line of this file;
- other types (`file-history-snapshot`, `queue-operation`, `progress`, ...) are ignored.

What is read: at most `MAX_BYTES` (the end of a longer transcript: the newest part, where the last
compaction summary is); lines that are not JSON objects (a line being written) are skipped; subagent
lines (`isSidechain`) and meta lines (`isMeta`: caveats, hook feedback) are left out; a prompt that is
a slash command, a command's output or an interruption is not a prompt. Nothing here raises on content:
`read_transcript` raises OSError only when the file cannot be opened or is not a regular file.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MAX_BYTES = 32 * 1024 * 1024  # the newest 32 MiB of a transcript: a long session's tail
MAX_LINE_BYTES = 4 * 1024 * 1024  # a longer line (an image, a huge tool output) is skipped unparsed
CHANGING_TOOLS = {"Edit": "file_path", "Write": "file_path", "MultiEdit": "file_path",
                  "NotebookEdit": "notebook_path"}
COMMAND_TOOLS = ("Bash",)
_NOT_PROMPTS = ("<command-name>", "<command-message>", "<command-args>", "<local-command-stdout>",
                "<local-command-stderr>", "<bash-input>", "<bash-stdout>", "<bash-stderr>",
                "<task-notification>", "Caveat:", "[Request interrupted")
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_EXIT_CODE = re.compile(r"^Exit code (\d+)")
COMPACT_PREAMBLE = "This session is being continued from a previous conversation"


@dataclass
class ChangedFile:
    path: str
    tool_uses: int = 0


@dataclass
class SessionRecord:
    """What a transcript says a session did, in the order it happened."""

    session_id: str = ""
    cwd: str = ""
    git_branch: str = ""
    version: str = ""
    started_at: str = ""
    ended_at: str = ""
    prompts: list[str] = field(default_factory=list)
    changed: dict[str, ChangedFile] = field(default_factory=dict)  # by path, first change first
    fixed_commands: list[str] = field(default_factory=list)  # failed, then passed (each once)
    failed_commands: list[str] = field(default_factory=list)  # failed and never passed afterwards
    last_message: str = ""
    compact_summaries: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    lines: int = 0
    skipped_lines: int = 0
    truncated: bool = False  # the transcript was longer than MAX_BYTES: its start was not read

    @property
    def empty(self) -> bool:
        return not (self.prompts or self.changed or self.fixed_commands or self.last_message
                    or self.compact_summaries)


def _texts(content: Any) -> list[str]:
    """The `text` blocks of a message's content (a string is one text)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"
            and isinstance(b.get("text"), str)]


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(_texts(content))


def _prompt(content: Any) -> str | None:
    """The person's words in a user line's content, or None when the line is not a prompt (tool
    results, slash commands and their output, interruptions)."""
    if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        return None
    text = _REMINDER.sub("", "\n".join(_texts(content))).strip()
    if not text or text.startswith(_NOT_PROMPTS):
        return None
    return text


def normalize_command(command: str) -> str:
    return " ".join(command.split())


class _Reader:
    def __init__(self) -> None:
        self.rec = SessionRecord()
        self.tools: dict[str, tuple[str, dict[str, Any]]] = {}  # tool_use id -> (name, input)
        self.failed: dict[str, None] = {}  # commands failed and not (yet) passed, in order
        self.fixed: dict[str, None] = {}
        self.uuids: set[str] = set()
        self.summaries: list[tuple[str, str]] = []  # (leafUuid, summary)
        self.last_id: str | None = None

    def line(self, entry: dict[str, Any]) -> None:
        kind = entry.get("type")
        if isinstance(entry.get("uuid"), str):
            self.uuids.add(entry["uuid"])
        if kind == "summary":
            if isinstance(entry.get("summary"), str) and isinstance(entry.get("leafUuid"), str):
                self.summaries.append((entry["leafUuid"], entry["summary"]))
            return
        if kind not in ("user", "assistant") or entry.get("isSidechain") is True:
            return
        self._envelope(entry)
        message = entry.get("message")
        if not isinstance(message, dict):
            return
        content = message.get("content")
        if kind == "assistant":
            self._assistant(message, content)
        elif entry.get("isCompactSummary") is True:
            text = "\n".join(_texts(content)).strip()
            if text:
                self.rec.compact_summaries.append(text)
        else:
            self._results(content)
            if entry.get("isMeta") is not True:
                prompt = _prompt(content)
                if prompt is not None:
                    self.rec.prompts.append(prompt)

    def _envelope(self, entry: dict[str, Any]) -> None:
        rec = self.rec
        for key, attr in (("sessionId", "session_id"), ("cwd", "cwd"), ("version", "version")):
            value = entry.get(key)
            if isinstance(value, str) and value and not getattr(rec, attr):
                setattr(rec, attr, value)
        if isinstance(entry.get("gitBranch"), str) and entry["gitBranch"]:
            rec.git_branch = entry["gitBranch"]  # the newest: a session can switch branches
        ts = entry.get("timestamp")
        if isinstance(ts, str) and ts:
            rec.started_at = rec.started_at or ts
            rec.ended_at = ts

    def _assistant(self, message: dict[str, Any], content: Any) -> None:
        texts = [t for t in _texts(content) if t.strip()]
        if texts:
            msg_id = message.get("id") if isinstance(message.get("id"), str) else None
            if msg_id is not None and msg_id == self.last_id:
                self.rec.last_message = (self.rec.last_message + "\n" + "\n".join(texts)).strip()
            else:
                self.rec.last_message = "\n".join(texts).strip()
            self.last_id = msg_id
        if isinstance(content, list):
            for b in content:
                if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str) \
                        and isinstance(b.get("name"), str):
                    self.tools[b["id"]] = (b["name"], b["input"] if isinstance(b.get("input"), dict) else {})

    def _results(self, content: Any) -> None:
        if not isinstance(content, list):
            return
        for b in content:
            if not (isinstance(b, dict) and b.get("type") == "tool_result" and isinstance(b.get("tool_use_id"), str)):
                continue
            name, args = self.tools.pop(b["tool_use_id"], ("", {}))
            exit_code = _EXIT_CODE.match(_result_text(b.get("content")))
            failed = b.get("is_error") is True or (exit_code is not None and exit_code.group(1) != "0")
            if name in CHANGING_TOOLS and not failed:
                path = args.get(CHANGING_TOOLS[name])
                if isinstance(path, str) and path:
                    self.rec.changed.setdefault(path, ChangedFile(path)).tool_uses += 1
            elif name in COMMAND_TOOLS and isinstance(args.get("command"), str):
                cmd = normalize_command(args["command"])
                if not cmd:
                    continue
                if failed:
                    self.failed[cmd] = None
                elif cmd in self.failed:
                    del self.failed[cmd]
                    self.fixed[cmd] = None

    def finish(self) -> SessionRecord:
        self.rec.fixed_commands = list(self.fixed)
        self.rec.failed_commands = list(self.failed)
        self.rec.titles = list(dict.fromkeys(s for leaf, s in self.summaries if leaf in self.uuids and s.strip()))
        return self.rec


def parse_lines(lines: list[bytes]) -> SessionRecord:
    """The record of a transcript's lines (bytes, one JSON object each; others are counted and skipped)."""
    r = _Reader()
    for raw in lines:
        if not raw.strip():
            continue
        r.rec.lines += 1
        if len(raw) > MAX_LINE_BYTES:
            r.rec.skipped_lines += 1
            continue
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            r.rec.skipped_lines += 1
            continue
        if isinstance(entry, dict):
            r.line(entry)
        else:
            r.rec.skipped_lines += 1
    return r.finish()


def read_transcript(path: Path, max_bytes: int = MAX_BYTES) -> SessionRecord:
    """The record of the transcript at `path` (its newest `max_bytes` when longer). OSError when it
    cannot be opened or is not a regular file (a FIFO or a device is never read or waited on)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        truncated = st.st_size > max_bytes
        if truncated:
            f.seek(st.st_size - max_bytes)
        data = f.read(max_bytes)
    lines = data.split(b"\n")
    if truncated and lines:
        lines = lines[1:]  # the first line was cut by the seek
    rec = parse_lines(lines)
    rec.truncated = truncated
    return rec
