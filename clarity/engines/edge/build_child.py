"""The child side of an index build (`clarity.engines.edge.build`): `python -m
clarity.engines.edge.build_child EXPORT GENERATION DIM PARENT_PID` writes the exported points into a new
shard generation, builds its HNSW index, syncs every file and writes `MARKER` (its count) last, so a
generation with a `MARKER` is complete and on disk. The process dies with its parent (PR_SET_PDEATHSIG)
and runs niced; `build_generation` is the same work in-process. The export format (`record_line`): one
JSON object per point: id, the stored payload, the dense vector and the BM25 vector as stored.

`quick_index` is the cheap index a migrated store gets before its first HNSW build (run by the
migration's child on the closed shard): int8 copies of the dense vectors, no graph. A search scans the
copies and rescores the best candidates with the float vectors (`clarity.engines.hybrid.dense_params`).
Measured at 100k random vectors while the first HNSW build ran (scripts/edge_probe.py --window-only,
docs/bench/edge_window.md and edge_window-loaded.md): retrieve's engine search p50 10.4 -> 5.1 ms (p95
20 -> 13) on a quieter machine, 29.2 -> 9.7 ms (p95 98 -> 28) on a loaded one, for 4.3-4.4 s of quick
index in the migration; the exact top 10 returned in full. Building the HNSW graph in the migration
instead would have made every call wait for the migration 227-790 s longer (the build's time here).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from clarity import faults
from clarity.engines.edge.shard import (
    BM25_COMPLETE,
    DENSE,
    INDEX_LAYOUT,
    INDEX_LAYOUT_FILE,
    SPARSE,
    edge_config,
    open_shard,
)
from clarity.platform.children import die_with_parent
from clarity.platform.files import publish, sync_tree
from clarity.platform.pagecache import read_tree

log = logging.getLogger(__name__)

MARKER = "clarity-index-count"  # in a generation folder: how many points its index build covered
QUICK_INDEX = "clarity-quick-index"  # in a generation folder: its vectors were quantised (`quick_index`)


def indexed_count(shard_dir: Path) -> int:
    try:
        return int((shard_dir / MARKER).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def index_layout(shard_dir: Path) -> int:
    """The layout an index build wrote `shard_dir` with (`edge_shard.INDEX_LAYOUT`); 1 for a build of
    an older version (no file), 0 for a folder no build made."""
    try:
        return int((shard_dir / INDEX_LAYOUT_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 1 if indexed_count(shard_dir) > 0 else 0


def record_line(rec: Any) -> bytes:
    vec = rec.vector or {}
    sp = vec.get(SPARSE)
    return orjson.dumps({"id": str(rec.id), "payload": rec.payload or {}, "dense": list(vec.get(DENSE) or []),
                         "sparse": [list(sp.indices), list(sp.values)] if sp is not None else None}) + b"\n"


def read_export(path: Path, batch: int = 1024) -> Iterator[list[Any]]:
    import qdrant_edge as q

    out: list[Any] = []
    with open(path, "rb") as f:
        for line in f:
            item = orjson.loads(line)
            vectors: dict[str, Any] = {DENSE: item["dense"]}
            if item["sparse"] is not None:
                vectors[SPARSE] = q.SparseVector(item["sparse"][0], item["sparse"][1])
            out.append(q.Point(item["id"], vectors, item["payload"]))
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


def build_generation(export: Path, gen: Path, dim: int) -> int:
    """Write the points of `export` into a new shard at `gen`, build its index, flush, close; then
    `BM25_COMPLETE`, sync and warm every file, and write `MARKER` last. Returns the count. The child's
    work; also usable in-process."""
    import qdrant_edge as q

    t = [time.perf_counter()]
    shard = open_shard(gen, dim, indexing=True)
    try:
        for points in read_export(export):
            shard.update(q.UpdateOperation.upsert_points(points))
        faults.point("index.child")
        t.append(time.perf_counter())
        shard.optimize()
        count = int(shard.count(q.CountRequest(exact=True)))
        shard.flush()
    finally:
        shard.close()
    t.append(time.perf_counter())
    (gen / BM25_COMPLETE).touch(mode=0o600)
    (gen / INDEX_LAYOUT_FILE).write_text(f"{INDEX_LAYOUT}\n")
    sync_tree(gen)  # on disk before it can become current (power loss), and the owner's load of it
    # finds clean pages (a folder whose pages were still being written back took 1.7-2.5 s at 100k, not ~0.5 s)
    read_tree(gen)  # closing a shard drops its files from the cache (fincore: 0 pages after close), and
    # loading 100k points from disk took 1.7-7.6 s here under disk contention instead of ~0.5 s
    publish(gen / MARKER, f"{count}\n".encode())  # last: a generation with it is complete
    t.append(time.perf_counter())
    log.info("index build of %d points in %s: write %.1f s, optimize %.1f s, sync+warm %.1f s", count, gen,
             t[1] - t[0], t[2] - t[1], t[3] - t[2])
    return count


def quick_index_config(dim: int) -> Any:
    """The shard's configuration (`edge_config`) with int8 scalar quantisation of the dense vectors and
    no HNSW graph (m=0): what `quick_index` writes its segment with."""
    import qdrant_edge as q

    cfg = edge_config(dim)
    cold = q.Memory.Cold
    quant = q.ScalarQuantizationConfig(q.ScalarType.Int8, quantile=0.99, always_ram=False)
    return q.EdgeConfig(
        vectors={DENSE: q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine, memory=cold,
                                           quantization_config=quant)},
        sparse_vectors=cfg.sparse_vectors,
        hnsw_config=q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000, max_indexing_threads=1,
                                      memory=cold),
        optimizers=q.EdgeOptimizersConfig(indexing_threshold=1),
        max_search_threads=1,
        id_tracker_memory=cold,
    )


def quick_index(shard_dir: Path, dim: int) -> float:
    """Rewrite the (closed) shard at `shard_dir` into one segment whose dense vectors also have an int8
    copy, searched in place of the float vectors (the best candidates rescored with them) until the
    HNSW index is built. Seconds a legacy store's migration pays for it (4.3 s at 100k here) instead of
    the 2-3x slower exact float search that served every call while the first index build ran. No
    graph is built (m=0): that is the background build's work, which starts when the engine opens the
    shard (no `MARKER` here). Stored vectors and payloads are unchanged; writes after it go to a new
    segment of the engine's own configuration. Marks the folder with `QUICK_INDEX`."""
    import qdrant_edge as q

    t = time.perf_counter()
    shard = q.EdgeShard.load(str(shard_dir), quick_index_config(dim))
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    (shard_dir / QUICK_INDEX).touch(mode=0o600)
    return time.perf_counter() - t


def main(argv: list[str]) -> int:
    export, gen, dim, parent = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    die_with_parent(parent)
    os.nice(10)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    build_generation(export, gen, dim)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
