"""Duplicates by meaning: which stored memories of the same type say nearly the same as a new one.

`similar_memories()` runs one dense search (cosine >= `threshold`, same `memory_type`, not superseded,
at most `LIMIT`) before a store. The store goes ahead all the same and reports the list as
`similar_to`, so a near-copy is never added silently and nothing a caller sent is dropped; the caller
decides (update or delete one, or store with `supersedes=<id>`). The search itself is unfiltered and
the type and superseded checks apply to its few hits: with those filters inside, an exact search over
100k points of one type cost about 40 ms per store instead of about 10. So a near-copy is missed only
when more than `FETCH` memories of other types or superseded ones are nearer. The threshold (default 0.85) is set
from measured distributions (docs/bench/retrieval.md: reworded pairs median 0.915, different
statements on one subject at most 0.802). Ids in `skip` are not reported: a store passes the memory it
supersedes and those that earlier items of its batch supersede (superseded by then, not yet written).
"""

from __future__ import annotations

from collections.abc import Collection

from clarity.engines.base import Engine, Point, SearchQuery

LIMIT = 3
FETCH = 16


def similar_memories(engine: Engine, new: Point, threshold: float, skip: Collection[str] = ()) -> list[Point]:
    """The stored memories (at most `LIMIT`, nearest first) of `new`'s type, not superseded and not in
    `skip`, whose cosine with `new` is at least `threshold`; `records.similar_to` turns them into the
    answer's `similar_to`."""
    sq = SearchQuery(dense=list(new.vector or []), sparse=None, limit=FETCH, mode="semantic", flt=None,
                     min_similarity=threshold)
    out = []
    for p in engine.query(sq):
        if p.id == new.id or p.id in skip:
            continue
        if p.payload.get("memory_type") != new.payload["memory_type"] or p.payload.get("superseded_by"):
            continue
        out.append(p)
    return out[:LIMIT]
