"""The commands that read many memories: `search` (by meaning and keywords), `list` (newest first, a
page, optionally a creation-time window) and `context` (the project's most useful memories as text for
an agent's session start).

On a project with no store they create nothing: the arguments are checked as the store would check
them (bad ones exit 2), then the answer is empty and a line says there is no store. Answers are fitted
into `--max-chars`, and what was cut is said.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from clarity.cli.output import out
from clarity.cli.render import fmt_memory, trimmed_note
from clarity.cli.store_access import no_store, out_no_store, store_exists, with_coordinator
from clarity.config import Settings
from clarity.errors import ClarityError, InvalidArgument
from clarity.memory.budget import MAX_MAX_CHARS, MIN_MAX_CHARS, fit_memories
from clarity.memory.model import MAX_LIMIT


def _check_max_chars(n: int) -> int:
    if not MIN_MAX_CHARS <= n <= MAX_MAX_CHARS:
        raise ClarityError(f"--max-chars must be {MIN_MAX_CHARS}..{MAX_MAX_CHARS}, not {n}")
    return n


def _filters(a: argparse.Namespace) -> dict[str, Any]:
    return {"types": a.type or None, "tags": a.tag or None, "sessions": a.session or None,
            "origins": a.origin or None, "flagged": a.flagged}


def cmd_search(settings: Settings, a: argparse.Namespace) -> int:
    _check_max_chars(a.max_chars)
    args: dict[str, Any] = {"query": a.query, "limit": a.limit, "mode": a.mode, **_filters(a)}
    if a.min_similarity is not None:
        args["min_similarity"] = a.min_similarity
    for key in ("since", "until"):
        if getattr(a, key) is not None:
            args[key] = getattr(a, key)
    if store_exists(settings):
        res = with_coordinator(settings, "retrieve", args)
    else:
        from clarity.memory.arguments import parse
        from clarity.memory.model import RetrieveRequest
        from clarity.memory.timefilter import created_range

        req = parse(RetrieveRequest, args)  # bad arguments are refused as the store would
        created_range(req.since, req.until)
        res = {"query": a.query, "mode": a.mode, "count": 0, "memories": [],
               "min_similarity": settings.memory.min_similarity if a.min_similarity is None else a.min_similarity}
    res = fit_memories(res, a.max_chars)
    if not store_exists(settings):
        out_no_store(res, a, settings, no_store(settings))
        return 0
    text = ("\n".join(fmt_memory(x) for x in res["memories"]) or "no memory matches") + trimmed_note(res)
    out(res, a.json, text)
    return 0


def _created(mem: dict[str, Any]) -> datetime:
    t = datetime.fromisoformat(mem["created_at"])
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _list_window(call: Callable[[str, dict[str, Any]], dict[str, Any]], a: argparse.Namespace,
                 flt: dict[str, Any]) -> dict[str, Any]:
    """`list` with `--since`/`--until`: the list runs newest first (by creation), so the memories created
    in the window are one run of positions; find it with pages of ids, then fetch the page asked for.
    Costs a page per 1,000 memories newer than the window's end (all of them without --since)."""
    from clarity.memory.timefilter import parse_time

    now = datetime.now(UTC)
    lo = parse_time(a.since, "since", now) if a.since is not None else None
    hi = parse_time(a.until, "until", now) if a.until is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgument(f"since ({lo.isoformat()}) is after until ({hi.isoformat()})")
    start: int | None = None
    end: int | None = None
    pos = 0
    while end is None:
        page = call("list", {**flt, "limit": MAX_LIMIT, "offset": pos})
        for i, mem in enumerate(page["memories"]):
            t = _created(mem)
            if start is None:
                if hi is not None and t > hi:
                    continue
                start = pos + i
            if lo is not None and t < lo:
                end = pos + i
                break
        pos += len(page["memories"])
        if end is None and (not page["memories"] or pos >= page["total"]):
            end = pos
    start = end if start is None else start
    first = start + a.offset
    n = min(a.limit, end - first)
    mems: list[dict[str, Any]] = []
    if n > 0:
        got = call("list", {**flt, "limit": n, "offset": first, "include_content": True})["memories"]
        mems = [m for m in got if (lo is None or _created(m) >= lo) and (hi is None or _created(m) <= hi)]
    return {"total": end - start, "offset": a.offset, "limit": a.limit, "memories": mems}


def cmd_list(settings: Settings, a: argparse.Namespace) -> int:
    _check_max_chars(a.max_chars)
    flt = _filters(a)
    if not store_exists(settings):
        from clarity.memory.arguments import parse
        from clarity.memory.model import ListRequest
        from clarity.memory.timefilter import created_range

        parse(ListRequest, {**flt, "limit": a.limit, "offset": a.offset})  # refused as the store would
        created_range(a.since, a.until)
        empty = fit_memories({"total": 0, "offset": a.offset, "limit": a.limit, "memories": []}, a.max_chars)
        out_no_store(empty, a, settings, no_store(settings))
        return 0
    from clarity.coordination.coordinator import Coordinator

    coordinator = Coordinator(settings)
    try:
        if a.since is None and a.until is None:
            res = coordinator.call("list", {**flt, "limit": a.limit, "offset": a.offset, "include_content": True})
        else:
            res = _list_window(coordinator.call, a, flt)
    finally:
        coordinator.close()
    res = fit_memories(res, a.max_chars)
    text = "\n".join([f"{res['total']} memories", *(fmt_memory(x) for x in res["memories"])]) + trimmed_note(res)
    out(res, a.json, text)
    return 0


def cmd_context(settings: Settings, a: argparse.Namespace) -> int:
    """The project's most useful memories as text for an agent (a SessionStart hook prints this)."""
    from clarity.context import MAX_LIMIT as CONTEXT_MAX
    from clarity.context import Gathered, gather, render

    if not 1 <= a.limit <= CONTEXT_MAX:
        raise ClarityError(f"--limit must be 1..{CONTEXT_MAX}, not {a.limit}")
    if a.max_chars < 200:
        raise ClarityError(f"--max-chars must be at least 200, not {a.max_chars}")
    found = Gathered([], 0, 0)
    if store_exists(settings):
        from clarity.coordination.coordinator import Coordinator

        coordinator = Coordinator(settings)
        try:
            found = gather(coordinator.call, a.limit, include_flagged=a.include_flagged)
        finally:
            coordinator.close()
    text = render(found, a.max_chars, str(settings.home))
    res = {"home": str(settings.home), "home_source": settings.home_source, "store_exists": store_exists(settings),
           "total": found.total, "memories": found.mems, "flagged_left_out": found.flagged_left_out, "text": text}
    out(res, a.json, text)
    return 0
