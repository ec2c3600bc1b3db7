"""The copy step of the legacy -> Edge migration, run in a child process.

The legacy store is read by `clarity.engines.qdrant_local`, not by qdrant-client: qdrant-client unpickles
every row with `pickle.loads`, which runs whatever code a crafted store holds, and keeps the whole store in
the memory of whoever opens it (an owner that migrated 100k memories in-process kept 1.45 GiB of RSS for its
whole life). The reader unpickles only the classes a qdrant-client store holds, streams the rows, and
writes nothing. The copy still runs in a child, so that whatever the store costs (memory, a crafted file's
worst) dies with it: the owner (the parent, which keeps holding the maintenance lock) runs
`python -m clarity.engines.edge.migrate_child ...`; the child reads the legacy collection, builds the shard
in the temporary folder the parent names, verifies and flushes it, reports the counts as one JSON line on
its stdout (a pipe to the parent, never the MCP channel; everything else it prints goes to stderr) and exits.
Before it reports, it gives the shard its quick index (`build_child.quick_index`: int8 copies of the dense
vectors, no graph; seconds at 100k), so that the migrated store does not search its 100k float vectors
exactly while the owner builds the HNSW index in the background after the swap (measured in
scripts/edge_probe.py `--window-n`).

Every point is written in the engine's one payload encoding (`edge_shard.edge_point`), so every value of
its payload comes back exactly; a point is refused (the migration fails, naming the file and the point)
when its id is not a UUID, its payload holds what a memory cannot (`clarity.values.check_json`) or
its vector is not one of this store's dimension (`clarity.engines.points.vector`).

Guarantees:
- The parent never imports qdrant_client (nor does the child); it accepts the copy only when the child
  exits 0 within the deadline and reports equal counts, and then counts the built shard itself.
- A child that fails, hangs past the deadline (killed) or dies leaves the legacy store untouched and
  raises `MigrationFailed` in the parent with the child's error.
- A SIGKILL of the parent kills the child (`clarity.platform.children.die_with_parent`: at once on
  Linux, within half a second elsewhere; the child also exits when its parent is already gone at
  start). The child holds `LOCK_FILE` (`clarity.platform.locks`) for its life; the parent waits for it
  (bounded, `migrate.LOCK_WAIT_S`) before it touches a leftover temporary folder, so a dying child
  never races a new one.
This file holds the child's code only; the parent's side is `clarity.engines.edge.migrate`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from clarity import faults
from clarity.errors import ClarityError
from clarity.platform.children import die_with_parent
from clarity.platform.locks import try_lock_file

log = logging.getLogger(__name__)

LOCK_FILE = "edge.migrating.lock"
BATCH = 4096


def _edge_point(item: Any, dim: int, db: Path) -> Any:
    """The Edge point of a legacy point (`qdrant_local.LegacyPoint`), or ClarityError naming it."""
    from clarity.engines.edge.shard import edge_point
    from clarity.engines.points import BadRecord, vector
    from clarity.engines.qdrant_local import BadPoint
    from clarity.values import check_json

    if isinstance(item, BadPoint):
        raise ClarityError(f"{db}: the point {item.label} cannot be migrated: {item.why}")
    try:
        memory_id = str(uuid.UUID(item.id)) if isinstance(item.id, str) else None
    except ValueError:
        memory_id = None
    if memory_id is None:
        raise ClarityError(f"{db}: the point {item.id} cannot be migrated: its id is not a UUID")
    dense = item.dense.get("", next(iter(item.dense.values()), None))  # the unnamed vector, else the first
    try:
        check_json(item.payload, "payload")
        return edge_point(memory_id, vector(dense, dim), item.payload)
    except BadRecord as e:
        raise ClarityError(f"{db}: the point {item.id} cannot be migrated: {e.message}") from None
    except ValueError as e:
        raise ClarityError(f"{db}: the point {item.id} cannot be migrated: {e}") from None


def copy_legacy(qdrant_path: Path, target: Path, dim: int, collection: str) -> tuple[int, int]:
    """Copy every point of the legacy collection into a new shard at `target`, flushed; returns
    (legacy count, shard count). Raises when they differ, or when the store cannot be read or a point
    cannot be migrated (ClarityError naming the file)."""
    import qdrant_edge as q

    from clarity.engines.edge.shard import open_shard
    from clarity.engines.qdrant_local import open_store

    store = open_store(qdrant_path)
    present = collection in store.collections
    rows = store.row_count(collection) if present else 0
    db = store.storage(collection)
    shard = open_shard(target, dim)
    try:
        copied = 0
        batch: list[Any] = []

        def write() -> None:
            nonlocal copied, batch
            shard.update(q.UpdateOperation.upsert_points(batch))
            copied += len(batch)
            batch = []
            if copied >= rows / 2:
                faults.point("migrate.copy")

        for item in store.points(collection, with_vectors=True) if present else ():
            batch.append(_edge_point(item, dim, db))
            if len(batch) >= BATCH:
                write()
        if batch:
            write()
        got = int(shard.count(q.CountRequest(exact=True)))
        if got != copied:
            raise RuntimeError(f"migration copied {copied} points, the shard counts {got}")
        shard.flush()
    finally:
        shard.close()
    return copied, got


def copy_and_index(qdrant_path: Path, target: Path, dim: int, collection: str) -> dict[str, Any]:
    """`copy_legacy`, then the quick index (`build_child.quick_index`: int8 copies of the vectors, so the
    store searches fast while its HNSW index builds after the swap); the report's counts and seconds."""
    from clarity.engines.edge.build_child import quick_index

    t = time.perf_counter()
    count, shard_count = copy_legacy(qdrant_path, target, dim, collection)
    copy_s = time.perf_counter() - t
    quick_s = quick_index(target, dim) if count else 0.0
    return {"count": count, "shard_count": shard_count, "copy_s": round(copy_s, 3), "quick_index_s": round(quick_s, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clarity.engines.edge.migrate_child")
    ap.add_argument("--parent-pid", type=int, required=True)
    ap.add_argument("--qdrant-path", type=Path, required=True)
    ap.add_argument("--target", type=Path, required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--log-file")
    a = ap.parse_args(argv)
    die_with_parent(a.parent_pid)
    report_fd = os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr; the report goes to the parent's pipe
    sys.stdout = sys.stderr
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if a.log_file:
        handlers.append(logging.FileHandler(a.log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    report: dict[str, Any] = {"ok": False, "pid": os.getpid()}
    try:
        held = try_lock_file(a.qdrant_path / LOCK_FILE)  # held until this process exits
        if held is None:
            raise RuntimeError(f"another migration process holds {a.qdrant_path / LOCK_FILE}")
        log.info("migration child %d copying %s into %s", os.getpid(), a.qdrant_path, a.target)
        report.update(ok=True, **copy_and_index(a.qdrant_path, a.target, a.dim, a.collection))
    except Exception as e:  # reported to the parent, which raises MigrationFailed with it
        log.exception("migration child failed")
        report["error"] = f"{type(e).__name__}: {e}"
    os.write(report_fd, orjson.dumps(report) + b"\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
