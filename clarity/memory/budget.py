"""Answers sized for an agent's context: pure functions that fit a tool result into `max_chars`.

Claude Code estimates a tool result at one token per 4 characters of its JSON, warns above 10,000
tokens and truncates above 25,000 (`MAX_MCP_OUTPUT_TOKENS`). `DEFAULT_MAX_CHARS` = 20,000 characters
is about 5,000 tokens of English and stays under the warning even for dense code or JSON (about 2.5
characters per token); the agent can raise it per call up to `MAX_MAX_CHARS` (about the cap).

Sizes are measured as the JSON text MCPServer puts in the result's text block (indented by 2, the
larger of the two copies a client gets; the structured copy is the same JSON without indentation).
Guarantees: the fitted answer measures at most `max_chars`, unless even one memory stripped to its
id and a marker does not fit (then the first memory is kept so the answer is never empty of what
matched, and `omitted` counts the rest). What is cut is said: a trimmed content ends with a marker
that names `get_memory` and the offset to read on from; `trimmed` lists their ids; memories left out
entirely are counted in `omitted`; metadata or context too large for the budget is replaced by a
stub naming its size. The input is never modified.
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic_core
from pydantic import BaseModel, Field

from clarity.memory.model import (  # the bounds of max_chars live with the tools' argument models
    DEFAULT_MAX_CHARS,
    MAX_MAX_CHARS,
    MIN_MAX_CHARS,
)
from clarity.memory.results import ListResult, Memory, RetrieveResult

__all__ = ["DEFAULT_MAX_CHARS", "MAX_MAX_CHARS", "MIN_MAX_CHARS", "MemoryPage", "SizedListResult",
           "SizedRetrieveResult", "Sized", "fit_memories", "marker", "measure", "page_memory", "water_fill"]
_MIN_CONTENT = 200  # below this share, a memory is dropped rather than cut to nothing


def marker(memory_id: str, shown_end: int, total: int) -> str:
    return (f"\n[... trimmed: characters up to {shown_end} of {total} shown; "
            f'get_memory(memory_id="{memory_id}", offset={shown_end}) returns the rest]')


def measure(value: Any) -> int:
    """Characters of `value` as indented JSON (what a client reads in the text block)."""
    return len(pydantic_core.to_json(value, indent=2).decode("utf-8"))


def _stub(value: Any) -> dict[str, Any]:
    return {"_trimmed": f"{measure(value)} characters of JSON left out to fit max_chars; "
                        f"get_memory with a larger max_chars returns it"}


def _cut(text: str, keep: int, memory_id: str, start: int = 0) -> str:
    """`text[:keep]` plus a marker; `start` is where `text` begins in the whole content."""
    return text[:keep] + marker(memory_id, start + keep, start + len(text))


def water_fill(lengths: list[int], room: int) -> list[int]:
    """Shares of `room` for contents of these lengths: short ones whole, the rest an equal share."""
    shares = [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    left = max(room, 0)
    for n, i in enumerate(order):
        fair = left // (len(order) - n)
        shares[i] = min(lengths[i], fair)
        left -= shares[i]
    return shares


def _shrink(shown: int, shown_size: int, target: int) -> int:
    """Characters to show next so their measured size fits `target`, given that `shown` characters
    measured `shown_size` (JSON escaping makes some characters count twice or more)."""
    if shown_size <= 0:
        return shown
    return max(int(shown * target / shown_size) - 8, 0)


def fit_memories(result: dict[str, Any], max_chars: int, key: str = "memories") -> dict[str, Any]:
    """A copy of `result` whose `result[key]` (a list of memory dicts, best first) fits `max_chars`.

    Adds `max_chars`, `trimmed` (ids whose content was cut) and `omitted` (memories left out from the
    end). Contents are cut to fair shares of what the rest of the answer leaves room for.
    """
    out = copy.deepcopy(result)
    mems: list[dict[str, Any]] = out[key]
    out.update(max_chars=max_chars, trimmed=[], omitted=0)
    if measure(out) <= max_chars:
        return out
    contents = [m.get("content") or "" for m in mems]
    for m in mems:
        if m.get("content") is not None:
            m["content"] = ""
    # metadata and context are kept whole unless, without contents, they alone crowd the budget
    excess = measure(out) - max_chars // 2
    big = sorted(((measure(m[f]), i, f) for i, m in enumerate(mems) for f in ("metadata", "context")
                  if m.get(f)), reverse=True)
    for size, i, f in big:
        if excess <= 0:
            break
        stub = _stub(mems[i][f])
        mems[i][f] = stub
        excess -= size - measure(stub)
    # leave out memories from the end while even empty ones do not fit
    everything = list(mems)

    def fits(k: int) -> bool:
        out[key] = everything[:k]
        return measure(out) + _MIN_CONTENT * sum(1 for c in contents[:k] if c) <= max_chars

    lo, hi = 1, len(everything)  # the most that fit, by bisection (at least one is kept)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    mems = out[key] = everything[:lo]
    out["omitted"] = len(everything) - lo
    contents = contents[:lo]
    out["trimmed"] = [m["id"] for m in mems if m.get("content") is not None]  # the most it can hold
    base = measure(out)
    room = max_chars - base
    for _ in range(8):  # shrink until the measured answer fits (JSON escaping makes text grow)
        shares = water_fill([len(c) for c in contents], room)
        for m, c, s in zip(mems, contents, shares, strict=True):
            if m.get("content") is not None:
                m["content"] = c if s >= len(c) else _cut(c, max(s - len(marker(m["id"], len(c), len(c))), 0),
                                                           m["id"])
        size = measure(out)
        if size <= max_chars:
            break
        room = _shrink(sum(shares), size - base, max_chars - base)
    out["trimmed"] = [m["id"] for m, c in zip(mems, contents, strict=True)
                      if m.get("content") is not None and m["content"] != c]
    return out


def page_memory(memory: dict[str, Any], max_chars: int, offset: int = 0) -> dict[str, Any]:
    """A copy of one memory whose content is `content[offset:]` cut to fit `max_chars`, with
    `content_offset`, `content_chars` (the whole content's length) and `next_offset` (None when the
    rest was shown). Metadata or context too large for half the budget are stubbed."""
    out = copy.deepcopy(memory)
    whole: str = out.get("content") or ""
    rest = whole[offset:]
    out.update(content="", content_offset=offset, content_chars=len(whole), next_offset=None)
    for field in ("metadata", "context"):
        if measure(out) > max_chars // 2 and out.get(field):
            out[field] = _stub(out[field])
    base = measure(out)
    keep = len(rest)
    for _ in range(8):
        if keep >= len(rest):
            out["content"], out["next_offset"] = rest, None
        else:
            out["content"], out["next_offset"] = _cut(rest, keep, out["id"], offset), offset + keep
        size = measure(out)
        if size <= max_chars or keep <= 1:
            break
        # scale by how much the shown text measures per character (JSON escapes grow it)
        keep = max(_shrink(min(keep, len(rest)), size - base, max_chars - base), 1)
    return out


class Sized(BaseModel):
    """Fields every sized answer adds to its schema."""

    max_chars: int = Field(description="the size this answer was fitted to (characters of JSON)")
    trimmed: list[str] = Field(default_factory=list,
                               description="ids whose content was cut; get_memory returns the rest")
    omitted: int = Field(default=0, description="matching memories left out to fit max_chars")


class SizedRetrieveResult(RetrieveResult, Sized):
    """retrieve_memory's answer, fitted to max_chars."""


class SizedListResult(ListResult, Sized):
    """list_memories' answer, fitted to max_chars; `omitted` memories come next at offset+len(memories)."""


class MemoryPage(Memory):
    """get_memory's answer: one memory, its content from `content_offset`, fitted to max_chars."""

    content_offset: int = Field(default=0, description="where the content shown starts")
    content_chars: int = Field(default=0, description="length of the whole content")
    next_offset: int | None = Field(default=None, description="pass as offset to read on; null when "
                                                              "the content shown runs to the end")
