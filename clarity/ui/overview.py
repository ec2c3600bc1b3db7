"""The page's overview of the whole store: totals by tag and by origin, and memories over time.

The stats operation counts by type only, so the overview pages through `list` (ids and fields, no
content: about 1,000 memories a call) and counts. Guarantees and limits:
- At most `MAX_PAGES` calls (`partial` says when the store is larger and the overview covers only its
  newest memories); the result is kept for `TTL_S` seconds and is recomputed at once when the store's
  total changes, so a page open on a busy store does not rescan it every few seconds.
- Counts are of one pass: writes that land during the pass may be counted once, twice or not at all
  (each page is consistent, the pass is not a snapshot).
- `timeline` buckets creation times by hour, day, week or 30 days, whichever gives at most `MAX_BUCKETS`
  buckets over the span from the oldest to the newest memory, with empty buckets included.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from clarity.memory.listing import list_all
from clarity.memory.model import MAX_LIMIT

MAX_PAGES = 200
TTL_S = 30.0
MAX_BUCKETS = 60
TOP_TAGS = 40
UNITS: tuple[tuple[str, timedelta], ...] = (("hour", timedelta(hours=1)), ("day", timedelta(days=1)),
                                            ("week", timedelta(weeks=1)), ("30 days", timedelta(days=30)))


def _when(iso: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def timeline(created: Iterable[datetime]) -> dict[str, Any]:
    """{"unit", "buckets": [{"start", "count"}]} over the span of `created` (see the module docstring)."""
    times = sorted(created)
    if not times:
        return {"unit": "day", "buckets": []}
    first, last = times[0], times[-1]
    unit, step = UNITS[-1]
    for name, size in UNITS:
        if (last - first) / size < MAX_BUCKETS:
            unit, step = name, size
            break
    if unit == "hour":
        start = first.replace(minute=0, second=0, microsecond=0)
    else:
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    n = int((last - start) / step) + 1
    counts = [0] * n
    for t in times:
        counts[min(n - 1, int((t - start) / step))] += 1
    return {"unit": unit, "buckets": [{"start": (start + i * step).isoformat(), "count": c}
                                      for i, c in enumerate(counts)]}


def summarize(memories: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals by tag (the `TOP_TAGS` most used) and by origin, and the timeline, of `memories`."""
    tags: Counter[str] = Counter()
    origins: Counter[str] = Counter()
    created: list[datetime] = []
    for mem in memories:
        tags.update(mem.get("tags") or [])
        origins[mem.get("origin") or "unknown"] += 1
        t = _when(mem.get("created_at", ""))
        if t is not None:
            created.append(t)
    return {"by_tag": dict(tags.most_common(TOP_TAGS)), "tag_count": len(tags),
            "by_origin": dict(origins.most_common()), "timeline": timeline(created)}


class Overview:
    """The cached overview of a store reached through `call` (an operation call, as Coordinator.call)."""

    def __init__(self, call: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._cached: tuple[float, int, dict[str, Any]] | None = None

    def get(self, total: int) -> dict[str, Any]:
        """The overview, recomputed when older than TTL_S or when the store's `total` changed."""
        with self._lock:
            hit = self._cached
            if hit is not None and hit[1] == total and time.monotonic() - hit[0] < TTL_S:
                return hit[2]
            result = self._scan()
            self._cached = (time.monotonic(), total, result)
            return result

    def _scan(self) -> dict[str, Any]:
        started = time.monotonic()
        listed = list_all(self._call, {"include_superseded": True}, most=MAX_PAGES * MAX_LIMIT)
        out = summarize(listed.memories)
        out.update(scanned=len(listed.memories), partial=not listed.complete,
                   scan_ms=round((time.monotonic() - started) * 1000))
        return out
