"""Qdrant Edge (`qdrant-edge-py`) as the default Engine: one shard in `<home>/qdrant/edge/`.

Layout of the shard: dense vector `dense` (cosine, the model's dimension), sparse vector `bm25` (IDF
modifier; BM25 of the content, see `clarity.memory.sparse`; a point with no indexable term has none), payload
indexes: keyword `memory_type`, `tags`, `content_hash`, `session`; datetime `created_at` (order-by).

Guarantees: see the durability contract in `clarity.engines.base` (a returned write survives SIGKILL;
a power cut loses at most the writes of the last `flush_interval_s`, or nothing with 0). Opening
replays the WAL (the shard is mmapped, not loaded). Only one process can open the shard: a second one
gets `EngineLocked` (Edge: "Can't init WAL: WouldBlock"). Every call holds Python's GIL inside the
library (measured: scripts/edge_probe.py), so calls are serialized; this engine never calls
`optimize()` while serving, because it holds the GIL for its whole run (24 s at 20k points here),
freezing every thread of the owner. Search is exact (plain index) unless `optimize()` is called by
maintenance code.

Stores written before BM25 (points without `bm25`) get their sparse vectors once per shard, at the
first open (`edge_shard.backfill_sparse`, in batches, each a vector-only update; the marker file
`BM25_COMPLETE` in the shard folder records that it ran, so later opens scan nothing). The shard is
opened by the lease owner, so this runs under the lease; a kill in the middle leaves the rest for the
next open (each batch is complete or absent). The shard's layout and helpers: `edge_shard`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clarity.engines.base import Filter, Point
from clarity.engines.edge_shard import (  # noqa: F401  (edge_dir, open_shard, ... are this module's API too)
    BM25_COMPLETE,
    DENSE,
    SIZE_CACHE_S,
    SPARSE,
    TIE_CAP,
    _dense,
    _disk_bytes,
    _point,
    _to_edge_payload,
    backfill_sparse,
    edge_dir,
    edge_vectors,
    finish_swap,
    open_shard,
    remove_tree,
    to_filter,
)
from clarity.engines.group_commit import Flusher, GroupCommit
from clarity.engines.hybrid import SearchQuery, edge_request, ranked

log = logging.getLogger(__name__)

class EdgeEngine:
    name = "qdrant-edge"
    exclusive = True

    def __init__(self, path: Path, flush_interval_s: float = 1.0) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        self._shard: Any = None
        self._lock = threading.RLock()
        self._group: GroupCommit | None = None
        self._flusher: Flusher | None = None
        self._size: tuple[float, int] | None = None

    @property
    def is_open(self) -> bool:
        return self._shard is not None

    def _s(self) -> Any:
        if self._shard is None:
            raise RuntimeError("ensure_collection() must be called first")
        return self._shard

    def ensure_collection(self, dim: int) -> None:
        with self._lock:
            if self._shard is not None:
                return
            finish_swap(self.path.parent)
            t = time.perf_counter()
            self._shard = open_shard(self.path, dim)
            marker = self.path / BM25_COMPLETE
            if not marker.exists():  # once per shard: afterwards every write carries its BM25 vector
                backfill_sparse(self._shard)
                marker.touch(mode=0o600)
            log.info("opened Edge shard %s in %.3f s", self.path, time.perf_counter() - t)
            self._group = GroupCommit(self._shard.flush)
            if self.flush_interval_s > 0:
                self._flusher = Flusher(self._group, self.flush_interval_s)

    def _written(self) -> None:
        if self._flusher is not None:
            self._flusher.mark_dirty()
        elif self._group is not None:
            self._group.commit()

    def upsert(self, points: Sequence[Point]) -> None:
        import qdrant_edge as q

        if not points:
            return
        edge_points = [q.Point(p.id, edge_vectors(p.vector, p.payload, p.sparse), _to_edge_payload(p.payload))
                       for p in points]
        with self._lock:
            self._s().update(q.UpdateOperation.upsert_points(edge_points))
        self._written()

    def delete(self, ids: Sequence[str]) -> None:
        import qdrant_edge as q

        if not ids:
            return
        with self._lock:
            self._s().update(q.UpdateOperation.delete_points(list(ids)))
        self._written()

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]:
        import qdrant_edge as q

        req = q.QueryRequest(limit=limit, query=q.Query.Nearest(list(vector), using=DENSE),
                             filter=to_filter(flt), score_threshold=score_threshold, with_payload=True)
        with self._lock:
            res = self._s().query(req)
        return [_point(r, score=float(r.score)) for r in res]

    def query(self, sq: SearchQuery) -> list[Point]:
        req = edge_request(sq, to_filter(sq.flt), DENSE, SPARSE)
        if req is None:
            return []
        with self._lock:
            res = self._s().query(req)
        return ranked([(_point(r, score=float(r.score)), _dense(r.vector)) for r in res], sq.dense)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        with self._lock:
            res = self._s().retrieve(list(ids), with_payload=True, with_vector=[DENSE] if with_vectors else False)
        return [_point(r, with_vectors) for r in res]

    def newest(self, flt: Filter | None, offset: int, limit: int) -> list[Point]:
        import qdrant_edge as q

        want = offset + limit
        if limit <= 0:
            return []
        order = q.OrderBy("created_at", q.Direction.Desc)
        with self._lock:
            recs, _ = self._s().scroll(q.ScrollRequest(limit=want, filter=to_filter(flt), order_by=order,
                                                       with_payload=True))
            found = {str(r.id): (int(r.order_value or 0), r) for r in recs}
            if len(recs) == want:  # points sharing the boundary timestamp: fetch them all, order by id
                edge = recs[-1].payload.get("created_at")
                tie = {**(flt or {})}
                cond = to_filter(tie)
                must = list(cond.must) if cond is not None else []
                must.append(q.FieldCondition("created_at", range=q.RangeDateTime(gte=edge, lte=edge)))
                ties, _ = self._s().scroll(q.ScrollRequest(limit=TIE_CAP, filter=q.Filter(must=must),
                                                           with_payload=True))
                boundary = int(recs[-1].order_value or 0)
                for r in ties:
                    found.setdefault(str(r.id), (boundary, r))
        ordered = sorted(found.items(), key=lambda kv: (kv[1][0], kv[0]), reverse=True)
        return [_point(r) for _id, (_v, r) in ordered[offset:want]]

    def find(self, flt: Filter, limit: int = 1) -> list[Point]:
        import qdrant_edge as q

        with self._lock:
            recs, _ = self._s().scroll(q.ScrollRequest(limit=limit, filter=to_filter(flt), with_payload=True))
        return [_point(r) for r in recs]

    def count(self, flt: Filter | None = None) -> int:
        import qdrant_edge as q

        with self._lock:
            return int(self._s().count(q.CountRequest(exact=True, filter=to_filter(flt))))

    def facet(self, key: str, limit: int = 1000) -> dict[str, int]:
        import qdrant_edge as q

        with self._lock:
            res = self._s().facet(q.FacetRequest(key, limit=limit, exact=True))
        return {str(h.value): int(h.count) for h in res}

    def page(self, cursor: str | None, limit: int,
             with_vectors: bool = False) -> tuple[list[Point], str | None]:
        import qdrant_edge as q

        req = q.ScrollRequest(offset=cursor, limit=limit, with_payload=True,
                              with_vector=[DENSE] if with_vectors else False)
        with self._lock:
            recs, nxt = self._s().scroll(req)
        return [_point(r, with_vectors) for r in recs], (str(nxt) if nxt is not None else None)

    def storage_bytes(self) -> int:
        now = time.monotonic()
        if self._size is None or now - self._size[0] > SIZE_CACHE_S:
            self._size = (now, _disk_bytes(self.path))
        return self._size[1]

    def sync(self) -> None:
        if self._group is not None:
            self._group.commit()

    def optimize(self) -> bool:
        """Build HNSW / merge segments. Blocks every thread of this process (GIL) for its whole run:
        only for maintenance, never while serving."""
        with self._lock:
            return bool(self._s().optimize())

    def close(self) -> None:
        with self._lock:
            if self._flusher is not None:
                self._flusher.stop()
                self._flusher = None
            if self._shard is not None:
                try:
                    self._shard.flush()
                    self._shard.close()
                finally:
                    self._shard = None
                    self._group = None
