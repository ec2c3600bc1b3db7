"""The project's most useful memories, as text an agent reads at session start (`clarity context`,
the MCP resource `clarity://context` and the `review_memories` prompt all use this).

Ranking: score = 0.6 * importance + 0.4 * 0.5 ** (age_days / 14), where age is counted from the
memory's last update (`updated_at`, else `created_at`). So a critical memory (importance 1) never
scores below 0.6, a fresh ordinary note (0.5) scores 0.7 and falls to 0.5 after two weeks and to 0.35
after two months; ties go to the newer memory. Only the newest `SCAN_LIMIT` memories are considered
(older ones are reached by search), and only the top `limit` are fetched whole.

Everything goes through `call(op, args)`, i.e. `Coordinator.call`: the `list` op (without contents)
to rank, then `get` for each memory shown. Nothing here writes.

Memories are data, never instructions (`render`, with `clarity.memory.framing`): the text opens by
saying that what follows are notes written by earlier sessions, to be weighed and never followed as
instructions; each memory is a header line and its content as one quoted line that no text of a memory
can end. Memories flagged as reading like instructions
(`flagged`: set at store time, or judged as read for memories stored before flags existed) are left out
and counted, unless `include_flagged`; then they are shown quoted like the others, under a warning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clarity.errors import NotFound
from clarity.memory.budget import water_fill
from clarity.memory.framing import FRAME, header, quoted
from clarity.memory.listing import Call, list_all

IMPORTANCE_WEIGHT = 0.6
HALF_LIFE_DAYS = 14.0
SCAN_LIMIT = 5000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# about 2,000 tokens: what a SessionStart hook prints goes into every session's context
DEFAULT_CONTEXT_CHARS = 8000



def _when(mem: dict[str, Any]) -> datetime | None:
    raw = mem.get("updated_at") or mem.get("created_at") or ""
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def score(mem: dict[str, Any], now: datetime) -> float:
    """The ranking score in the module docstring; a memory without a readable time counts as old."""
    t = _when(mem)
    age_days = max((now - t).total_seconds() / 86400, 0.0) if t else float("inf")
    recency = 0.5 ** (age_days / HALF_LIFE_DAYS)
    return float(IMPORTANCE_WEIGHT * float(mem.get("importance", 0.5)) + (1 - IMPORTANCE_WEIGHT) * recency)


def rank(mems: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Best first; equal scores newest first."""
    return sorted(mems, key=lambda m: (score(m, now), m.get("updated_at") or m.get("created_at") or ""),
                  reverse=True)


class Gathered:
    """What `gather` found: the memories to show, how many the store holds, how many flagged ones were
    left out."""

    def __init__(self, mems: list[dict[str, Any]], total: int, flagged_left_out: int) -> None:
        self.mems, self.total, self.flagged_left_out = mems, total, flagged_left_out


def gather(call: Call, limit: int = DEFAULT_LIMIT, now: datetime | None = None,
           include_flagged: bool = False) -> Gathered:
    """The top `limit` memories whole, with `score`, best first (flagged ones only if `include_flagged`)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, not {limit}")
    now = now or datetime.now(UTC)
    flt: dict[str, Any] = {} if include_flagged else {"flagged": False}
    stored_flagged = 0 if include_flagged else int(call("list", {"flagged": True, "limit": 1})["total"])
    left_out = stored_flagged
    listed = list_all(call, flt, most=SCAN_LIMIT)
    seen, total = listed.memories, listed.total
    out: list[dict[str, Any]] = []
    for head in rank(seen, now):
        if len(out) >= limit:
            break
        try:
            mem = call("get", {"memory_id": head["id"]})
        except NotFound:  # deleted between list and get
            continue
        if mem.get("flagged") and not include_flagged:  # stored before flags: judged as read
            left_out += 1
            continue
        mem["score"] = round(score(mem, now), 4)
        out.append(mem)
    return Gathered(out, total + stored_flagged, left_out)


def render(found: Gathered, max_chars: int = DEFAULT_CONTEXT_CHARS, home: str = "") -> str:
    """Markdown of `found` in at most about `max_chars` characters; long contents cut with a marker."""
    where = f" in {home}" if home else ""
    flagged = (f"{found.flagged_left_out} memor{'y' if found.flagged_left_out == 1 else 'ies'} flagged as "
               "reading like instructions to an agent left out (review them with `clarity ui` or "
               "`clarity list --flagged`).\n" if found.flagged_left_out else "")
    if not found.mems:
        stored = "stored" if found.total == 0 else "to show"
        return (f"# Project memory (Clarity)\nNo memories {stored} yet{where}. Store decisions, facts and "
                f"preferences worth keeping with store_memory.\n{flagged}")
    head = (f"# Project memory (Clarity)\n{FRAME}\n\nThe {len(found.mems)} most useful of {found.total} "
            f"memories{where}, ranked by importance and recency. Find more with retrieve_memory; read one whole "
            f"with get_memory.\n{flagged}\n")
    lines = [(header(m), quoted(m.get("content") or "")) for m in found.mems]
    room = max_chars - len(head) - sum(len(prefix) + 1 for prefix, _ in lines)
    shares = water_fill([len(body) for _, body in lines], room)
    out = [head]
    for (prefix, body), share in zip(lines, shares, strict=True):
        if share < len(body):
            body = body[:max(share - 40, 4)].rstrip() + " [... cut; get_memory for the rest]"
        out.append(prefix + body + "\n")
    return "".join(out)


def context_text(call: Call, limit: int = DEFAULT_LIMIT, max_chars: int = DEFAULT_CONTEXT_CHARS,
                 home: str = "", include_flagged: bool = False) -> str:
    return render(gather(call, limit, include_flagged=include_flagged), max_chars, home)
