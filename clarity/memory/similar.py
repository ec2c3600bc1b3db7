"""Duplicates by meaning: which stored memories of the same type say nearly the same as a new one.

`similar_memories()` runs one dense search (cosine >= `threshold`, same `memory_type`, not superseded,
at most `LIMIT`) before a store. The store goes ahead all the same and reports the list as
`similar_to`, so a near-copy is never added silently and nothing a caller sent is dropped; the caller
decides (update or delete one, or store with `supersedes=<id>`). The threshold (default 0.85) is set
from measured distributions (docs/bench/retrieval.md: reworded pairs median 0.915, different
statements on one subject at most 0.802). The memory being superseded is not reported.
"""

from __future__ import annotations

from typing import Any

from clarity.engines.base import Engine, Point
from clarity.engines.hybrid import SearchQuery

LIMIT = 3


def similar_memories(engine: Engine, new: Point, threshold: float, replaces: Point | None) -> list[dict[str, Any]]:
    sq = SearchQuery(dense=list(new.vector or []), sparse=None, limit=LIMIT + 1, mode="semantic",
                     flt={"memory_type": [new.payload["memory_type"]], "superseded_by": {"is_empty": True}},
                     min_similarity=threshold)
    out = []
    for p in engine.query(sq):
        if p.id == new.id or (replaces is not None and p.id == replaces.id):
            continue
        cos = p.extra.get("cosine")
        out.append({"id": p.id, "similarity": round(float(cos if cos is not None else p.score or 0.0), 6)})
    return out[:LIMIT]
