"""Qdrant Edge (`qdrant-edge-py`) as the default Engine: one shard in `<home>/qdrant/edge*/`.

Layout of the shard: dense vector `dense` (cosine, the model's dimension), sparse vector `bm25` (IDF
modifier; BM25 of the content, see `clarity.encoders.sparse`; a point with no indexable term has none), payload
indexes: keyword `memory_type`, `tags`, `content_hash`, `session`; datetime `created_at` (order-by).

Guarantees: see the durability contract in `clarity.engines.base` (a returned write survives SIGKILL;
a power cut loses at most the writes of the last `flush_interval_s`, or nothing with 0). Opening
replays the WAL (the shard is mmapped, not loaded). Only one process can open the store: a second one
gets `EngineLocked` (`edge_layout.lock_store`; Edge's WAL lock too). Every call holds Python's GIL inside the
library (measured: scripts/edge_probe.py), so calls are serialized; this engine never calls
`optimize()` itself, because it holds the GIL for its whole run (24 s at 20k points here), freezing
every thread of the owner. Instead, once `index_threshold` points have been written since the last index
build (counted at open from the marker the build leaves), a background build makes an indexed copy in a
child process and swaps it in (`clarity.engines.edge.build`; the shard folder is then a new generation,
`clarity.engines.edge.layout`). Points written since the last build are searched exactly. A generation
indexed by an older version (`edge_shard.INDEX_LAYOUT`) is rebuilt once, in the same way, after its open.

Full disks: Edge writes its WAL (32 MiB segment files `wal/open-N`, created sparse, one spare ahead)
and its segments through shared memory maps, and a page the file system cannot back kills the process
with SIGBUS. So no write reaches Edge unless the shard's file system has `disk_margin` bytes free plus
four times the batch's size (`DiskFull` otherwise: nothing was applied, and writes work again once space
is freed), and the WAL file being written is preallocated (`clarity.platform.disk`) at open and whenever
a write rolls the WAL over, when there is room for that beyond the margin. Reads never write.
Not covered: another process taking the margin's last bytes between the check and Edge's write.

Stores written before BM25 (points without `bm25`) get their sparse vectors once per shard, at the
first open (`edge_shard.backfill_sparse`, in vector-only batches; the marker `BM25_COMPLETE` records
that it ran). It runs under the lease; a kill leaves the rest for the next open.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from clarity.engines.base import Filter, Point, SearchQuery
from clarity.engines.edge.build import IndexBuild, index_layout, indexed_count
from clarity.engines.edge.group_commit import Flusher, GroupCommit
from clarity.engines.edge.layout import current_dir, finish_restore, lock_store, remove_strays
from clarity.engines.edge.shard import (  # noqa: F401  (edge_dir, open_shard, ... are this module's API too)
    BM25_COMPLETE,
    DENSE,
    INDEX_LAYOUT,
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
    open_shard,
    remove_tree,
    to_filter,
)
from clarity.engines.hybrid import dense_params, edge_request, ranked
from clarity.errors import DiskFull
from clarity.platform import disk
from clarity.platform.locks import FileLock

log = logging.getLogger(__name__)
DEFAULT_INDEX_THRESHOLD = 20_000
# free bytes a write needs beyond 4x its own size: the pages Edge touches in ~25 mapped segment files,
# a WAL rollover's record, the flush's regular writes, the lease record and the log
DISK_MARGIN = 8 << 20


class EdgeEngine:
    """`path`: the shard's base path (`edge_dir(<home>/qdrant)`); the shard is in its current generation.
    `index_threshold`: points written since the last index build that start a background build
    (0 or less: never)."""

    name = "qdrant-edge"
    exclusive = True
    disk_margin = DISK_MARGIN

    def __init__(self, path: Path, flush_interval_s: float = 1.0,
                 index_threshold: int = DEFAULT_INDEX_THRESHOLD) -> None:
        self.path = self.base = path
        self.flush_interval_s = flush_interval_s
        self.index_threshold = index_threshold
        self.dim = 0
        self._dir = path
        self._shard: Any = None
        self._lock = threading.RLock()
        self._group: GroupCommit | None = None
        self._flusher: Flusher | None = None
        self._size: tuple[float, int] | None = None
        self._since_build = 0
        self._relayout = False  # the current generation's index is of an older layout: rebuild it once
        self._build: IndexBuild | None = None
        self.last_build: IndexBuild | None = None
        self._fence: FileLock | None = None
        self._wal: tuple[str, ...] = ()  # the WAL's file names after the last write (see _back_wal)

    def _s(self) -> Any:
        if self._shard is None:
            raise RuntimeError("ensure_collection() must be called first")
        return self._shard

    def ensure_collection(self, dim: int) -> None:
        with self._lock:
            if self._shard is not None:
                return
            t = time.perf_counter()
            fence = lock_store(self.base)
            try:
                finish_restore(self.base)
                remove_strays(self.base)
                self._dir = current_dir(self.base)
                if not (self._dir / "segments").is_dir():  # creating a shard writes (an existing one opens)
                    self._room(0, "create the store")
                self._shard = open_shard(self._dir, dim)
            except BaseException:
                fence.close()
                raise
            self._fence, self.dim = fence, dim
            self._back_wal()
            marker = self._dir / BM25_COMPLETE
            if not marker.exists() and self._free() < self.disk_margin:
                log.warning("BM25 backfill postponed: less than %d MB free on %s", self.disk_margin >> 20,
                            self._dir)
            elif not marker.exists():  # once per shard: afterwards every write carries its BM25 vector
                backfill_sparse(self._shard)
                marker.touch(mode=0o600)
                self._back_wal()
            log.info("opened Edge shard %s in %.3f s", self._dir, time.perf_counter() - t)
            self._group = GroupCommit(self._flush_current)
            if self.flush_interval_s > 0:
                self._flusher = Flusher(self._group, self.flush_interval_s)
            self._since_build = max(0, self.count() - indexed_count(self._dir))
            # an index built by an older version loads its parts into RAM (slow opens): rebuild it once
            self._relayout = 0 < index_layout(self._dir) < INDEX_LAYOUT
            self._maybe_build()

    def _flush_current(self) -> None:
        shard = self._shard
        if shard is None:
            return
        try:
            shard.flush()
        except Exception:
            if shard is self._shard:
                raise  # else: replaced by an index build, which flushed the new shard before the switch

    def _free(self) -> int:
        try:
            return disk.free_bytes(self._dir)
        except OSError:
            return 1 << 62  # no statvfs answer: do not refuse writes on a guess

    def _room(self, batch_bytes: int, what: str = "") -> None:
        """Raise DiskFull unless the shard's file system has room for a write of `batch_bytes`."""
        need = self.disk_margin + 4 * batch_bytes
        free = self._free()
        if free < need:
            raise DiskFull(f"disk full: {free / 1e6:.1f} MB free on {self._dir}, need {need / 1e6:.1f} MB"
                           f"{' to ' + what if what else ''}; free space and retry: nothing was applied")

    def _back_wal(self) -> None:
        """Preallocate the WAL file Edge writes now (the lowest `open-N`) when the WAL's files changed
        since the last call, and only when the file system keeps `disk_margin` free beyond it. Never
        raises: without it the margin check still guards each write."""
        wal = self._dir / "wal"
        try:
            names = tuple(sorted(os.listdir(wal)))
        except OSError:
            return
        if names == self._wal:
            return
        self._wal = names
        opened = [n for n in names if n.startswith("open-") and n[5:].isdigit()]
        if not opened:
            return
        active = wal / min(opened, key=lambda n: int(n[5:]))
        try:
            missing = active.stat().st_size - disk.allocated_bytes(active)
            if missing <= 0:
                return
            if self._free() - missing < 2 * self.disk_margin:
                log.info("WAL file %s not preallocated: %.1f MB free", active, self._free() / 1e6)
                return
            disk.preallocate(active)
        except OSError as e:
            log.warning("could not preallocate the WAL file %s: %s", active, e)

    def _maybe_build(self) -> None:
        """Start a background index build when due (caller holds the lock or is opening)."""
        due = self.index_threshold <= self._since_build or self._relayout
        if self.index_threshold > 0 and due and self._build is None and self._shard is not None:
            self._build = IndexBuild(self)
            self._build.start()

    def _build_finished(self, build: IndexBuild) -> None:
        with self._lock:
            if self._build is build:
                self._build = None
            self.last_build = build
            if build.result != "done":  # no retry before `index_threshold` more writes (or a reopen)
                self._since_build = 0
                self._relayout = False

    def _switch(self, shard: Any, folder: Path, written_since: int) -> None:
        """An index build's swap (the build holds the lock): `shard` in `folder` is now current."""
        self._shard, self._dir, self._since_build = shard, folder, written_since
        self._relayout = False
        self._size = None

    def build_index(self, timeout_s: float | None = None) -> bool:
        """Build the index now and wait for it (bench stores, maintenance); same path as the background
        build. Returns True when the indexed generation is current."""
        with self._lock:
            self._s()
            build = self._build
            if build is None:
                build = self._build = IndexBuild(self)
                build.start()
        if not build.wait(timeout_s if timeout_s is not None else 3600.0):
            return False
        return build.result == "done"

    def index_state(self) -> dict[str, Any]:
        with self._lock:
            return {"folder": self._dir.name, "written_since_build": self._since_build,
                    "building": self._build is not None}

    def _written(self) -> None:
        if self._flusher is not None:
            self._flusher.mark_dirty()
        elif self._group is not None:
            self._group.commit()

    def upsert(self, points: Sequence[Point]) -> None:
        import qdrant_edge as q

        if not points:
            return
        payloads = [_to_edge_payload(p.payload) for p in points]
        edge_points = [q.Point(p.id, edge_vectors(p.vector, p.payload, p.sparse), payload)
                       for p, payload in zip(points, payloads, strict=True)]
        # the batch's bytes, roughly: payload JSON, dense floats, ids and the sparse vector
        size = sum(len(orjson.dumps(payload)) for payload in payloads) + sum(4 * len(p.vector or ()) + 512
                                                                              for p in points)
        with self._lock:
            self._room(size)
            self._s().update(q.UpdateOperation.upsert_points(edge_points))
            self._back_wal()
            if self._build is not None:
                self._build.note([p.id for p in points], True)
            self._since_build += len(points)
            self._maybe_build()
        self._written()

    # The three below read then write under this engine's lock: an embedded store has one process
    # writing it (the lease owner), so nothing can come in between (a server engine needs Qdrant's own
    # conditional updates for the same: clarity.engines.qdrant_client).

    def insert(self, points: Sequence[Point]) -> None:
        """Write the points whose id is not stored yet; stored ones are left as they are."""
        with self._lock:
            stored = {p.id for p in self.retrieve([p.id for p in points])}
            self.upsert([p for p in points if p.id not in stored])

    def set_fields(self, point_id: str, fields: dict[str, Any], vector: list[float] | None = None,
                   sparse: tuple[list[int], list[float]] | None = None) -> bool:
        """Set the payload keys `fields` (others untouched; the dense `vector` and the BM25 `sparse`
        vector when given). False when the point does not exist."""
        with self._lock:
            found = self.retrieve([point_id], with_vectors=vector is None)
            if not found:
                return False
            p = found[0]
            self.upsert([Point(id=p.id, payload={**p.payload, **fields}, vector=vector if vector is not None
                               else p.vector, sparse=sparse)])
            return True

    def mark_superseded(self, point_id: str, by: str) -> str | None:
        """Set `superseded_by = by` unless the point has one; its `superseded_by` after (None: no point)."""
        with self._lock:
            found = self.retrieve([point_id], with_vectors=True)
            if not found:
                return None
            p = found[0]
            if not p.payload.get("superseded_by"):
                self.upsert([Point(id=p.id, payload={**p.payload, "superseded_by": by}, vector=p.vector)])
                return by
            return str(p.payload["superseded_by"])

    def delete(self, ids: Sequence[str]) -> None:
        import qdrant_edge as q

        if not ids:
            return
        with self._lock:
            self._room(64 * len(ids))
            self._s().update(q.UpdateOperation.delete_points(list(ids)))
            self._back_wal()
            if self._build is not None:
                self._build.note(list(ids), False)
        self._written()

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]:
        import qdrant_edge as q

        req = q.QueryRequest(limit=limit, query=q.Query.Nearest(list(vector), using=DENSE),
                             filter=to_filter(flt), score_threshold=score_threshold, with_payload=True,
                             params=dense_params())
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
            self._size = (now, _disk_bytes(self._dir))
        return self._size[1]

    def sync(self) -> None:
        if self._group is not None:
            self._group.commit()

    def close(self) -> None:
        build = self._build
        if build is not None:  # outside the lock: the build's thread may be waiting for it
            build.cancel()
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
            if self._fence is not None:
                self._fence.close()
                self._fence = None
