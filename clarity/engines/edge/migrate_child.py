"""The copy step of the legacy -> Edge migration, run in a child process.

qdrant-client's local mode unpickles the whole legacy store into the memory of whoever opens it, and
Python never gives that memory back: an owner that migrated 100k memories in-process kept 1.45 GiB of
RSS for its whole life. So the owner (the parent, which keeps holding the maintenance lock) runs
`python -m clarity.engines.edge.migrate_child ...`; the child reads the legacy collection, builds the shard
in the temporary folder the parent names, verifies and flushes it, reports the counts as one JSON line
on its stdout (a pipe to the parent, never the MCP channel; everything else it prints goes to stderr)
and exits, taking that memory with it.

Guarantees:
- The parent never imports qdrant_client; it accepts the copy only when the child exits 0 within the
  deadline and reports equal counts, and then counts the built shard itself.
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
from pathlib import Path
from typing import Any

import orjson

from clarity import faults
from clarity.platform.children import die_with_parent
from clarity.platform.locks import try_lock_file

log = logging.getLogger(__name__)

LOCK_FILE = "edge.migrating.lock"
BATCH = 4096


def _vector(v: Any) -> list[float]:
    if isinstance(v, dict):  # a named vector: the first dense one
        v = next(x for x in v.values() if isinstance(x, list))
    return list(v)


def copy_legacy(qdrant_path: Path, target: Path, dim: int, collection: str) -> tuple[int, int]:
    """Copy every point of the legacy collection into a new shard at `target`, flushed; returns
    (legacy count, shard count). Raises when they differ."""
    import qdrant_edge as q
    from qdrant_client import QdrantClient

    from clarity.engines.edge.shard import edge_vectors, open_shard

    client = QdrantClient(path=str(qdrant_path))
    try:
        expected = int(client.count(collection, exact=True).count) if client.collection_exists(collection) else 0
        shard = open_shard(target, dim)
        try:
            copied = 0
            offset: Any = None
            while expected:
                recs, offset = client.scroll(collection, limit=BATCH, offset=offset, with_payload=True,
                                             with_vectors=True)
                pts = [q.Point(str(r.id), edge_vectors(_vector(r.vector), dict(r.payload or {})),
                               dict(r.payload or {})) for r in recs if r.vector is not None]
                if pts:
                    shard.update(q.UpdateOperation.upsert_points(pts))
                copied += len(pts)
                if copied >= expected / 2:
                    faults.point("migrate.copy")
                if offset is None:
                    break
            got = int(shard.count(q.CountRequest(exact=True)))
            if got != expected or copied != expected:
                raise RuntimeError(f"migration copied {copied} points, the shard counts {got}, "
                                   f"the legacy store {expected}")
            shard.flush()
        finally:
            shard.close()
        return expected, got
    finally:
        client.close()


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
        count, shard_count = copy_legacy(a.qdrant_path, a.target, a.dim, a.collection)
        report.update(ok=True, count=count, shard_count=shard_count)
    except Exception as e:  # reported to the parent, which raises MigrationFailed with it
        log.exception("migration child failed")
        report["error"] = f"{type(e).__name__}: {e}"
    os.write(report_fd, orjson.dumps(report) + b"\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
