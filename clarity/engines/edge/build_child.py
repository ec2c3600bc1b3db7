"""The child side of an index build (`clarity.engines.edge.build`): `python -m
clarity.engines.edge.build_child EXPORT GENERATION DIM PARENT_PID` writes the exported points into a new
shard generation, builds its HNSW index, syncs every file and writes `MARKER` (its count) last, so a
generation with a `MARKER` is complete and on disk. The process dies with its parent (PR_SET_PDEATHSIG)
and runs niced; `build_generation` is the same work in-process. The export format (`record_line`): one
JSON object per point: id, the stored payload, the dense vector and the BM25 vector as stored.
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
from clarity.engines.edge.shard import BM25_COMPLETE, DENSE, INDEX_LAYOUT, INDEX_LAYOUT_FILE, SPARSE, open_shard
from clarity.platform.children import die_with_parent
from clarity.platform.files import publish, sync_tree
from clarity.platform.pagecache import read_tree

log = logging.getLogger(__name__)

MARKER = "clarity-index-count"  # in a generation folder: how many points its index build covered


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


def main(argv: list[str]) -> int:
    export, gen, dim, parent = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    die_with_parent(parent)
    os.nice(10)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    build_generation(export, gen, dim)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
