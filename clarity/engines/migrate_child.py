"""The copy step of the legacy -> Edge migration, run in a child process.

qdrant-client's local mode unpickles the whole legacy store into the memory of whoever opens it, and
Python never gives that memory back: an owner that migrated 100k memories in-process kept 1.45 GiB of
RSS for its whole life. So the owner (the parent, which keeps holding the maintenance lock) runs
`python -m clarity.engines.migrate_child ...`; the child reads the legacy collection, builds the shard
in the temporary folder the parent names, verifies and flushes it, reports the counts as one JSON line
on its stdout (a pipe to the parent, never the MCP channel; everything else it prints goes to stderr)
and exits, taking that memory with it.

Guarantees:
- The parent never imports qdrant_client; it accepts the copy only when the child exits 0 within the
  deadline and reports equal counts, and then counts the built shard itself.
- A child that fails, hangs past the deadline (killed) or dies leaves the legacy store untouched and
  raises `MigrationFailed` in the parent with the child's error.
- A SIGKILL of the parent kills the child (Linux: PR_SET_PDEATHSIG; the child also exits when its
  parent is already gone at start). The child holds `LOCK_FILE` (flock) for its life; the parent waits
  for it (bounded) before it touches a leftover temporary folder, so a dying child never races a new one.
Not guaranteed: on systems without PR_SET_PDEATHSIG an orphaned child runs its copy to the end (into a
folder the next migration discards), and the next migration waits up to `LOCK_WAIT_S` for it.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from clarity.errors import ClarityError
from clarity.sysutil import die_with_parent

log = logging.getLogger(__name__)

LOCK_FILE = "edge.migrating.lock"
LOCK_WAIT_S = 60.0
DEADLINE_ENV = "CLARITY_MIGRATE_DEADLINE_S"  # overrides the computed deadline (tests, huge stores)
BATCH = 4096


class MigrationFailed(ClarityError):
    """The migration's copy did not complete; the legacy store is untouched and the next owner retries."""

    kind = "migration"


def deadline_s(qdrant_path: Path) -> float:
    """10 minutes, plus 2 s per MiB of legacy files (100k memories took ~45 s here)."""
    if os.environ.get(DEADLINE_ENV):
        return float(os.environ[DEADLINE_ENV])
    size = sum(f.stat().st_size for f in (qdrant_path / "collection").rglob("*") if f.is_file())
    return 600.0 + 2.0 * size / (1 << 20)


def wait_for_previous_child(lock_path: Path, timeout_s: float = LOCK_WAIT_S) -> None:
    """Return once no (dying or orphaned) migration child holds `lock_path`; MigrationFailed after
    `timeout_s`."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        end = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > end:
                    raise MigrationFailed(f"a previous migration process still holds {lock_path} after "
                                          f"{timeout_s:.0f} s; nothing changed, the legacy store stays") from None
                time.sleep(0.05)
    finally:
        os.close(fd)  # releases the flock


def run_copy(qdrant_path: Path, target: Path, dim: int, collection: str) -> dict[str, Any]:
    """Run the copy in a child; returns its report ({"count", "pid", "seconds"}) once the parent has
    checked it. Raises MigrationFailed (legacy store untouched) otherwise. The caller has waited for
    any earlier child first (`wait_for_previous_child`, before it cleared the target folder)."""
    cmd = [sys.executable, "-m", "clarity.engines.migrate_child", "--parent-pid", str(os.getpid()),
           "--qdrant-path", str(qdrant_path), "--target", str(target), "--dim", str(dim),
           "--collection", collection]
    log_file = next((h.baseFilename for h in logging.getLogger().handlers
                     if isinstance(h, logging.FileHandler)), None)
    if log_file:
        cmd += ["--log-file", log_file]
    limit = deadline_s(qdrant_path)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        raise MigrationFailed(f"the migration's copy did not finish within {limit:.0f} s (pid {proc.pid} "
                              "killed); nothing changed, the legacy store stays") from None
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        raise
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        report: dict[str, Any] = orjson.loads(lines[-1]) if lines else {}
    except orjson.JSONDecodeError:
        report = {"error": f"unreadable report {lines[-1][:200]!r}"}
    if proc.returncode != 0 or not report.get("ok"):
        raise MigrationFailed(f"the migration's copy failed (exit code {proc.returncode}): "
                              f"{report.get('error', 'no report')}; nothing changed, the legacy store stays")
    if report.get("count") != report.get("shard_count") or not isinstance(report.get("count"), int):
        raise MigrationFailed(f"the migration's copy reported {report.get('count')} legacy points but "
                              f"{report.get('shard_count')} in the shard; nothing changed, the legacy store stays")
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


# -- the child ---------------------------------------------------------------------------------------

def _vector(v: Any) -> list[float]:
    if isinstance(v, dict):  # a named vector: the first dense one
        v = next(x for x in v.values() if isinstance(x, list))
    return list(v)


def copy_legacy(qdrant_path: Path, target: Path, dim: int, collection: str) -> tuple[int, int]:
    """Copy every point of the legacy collection into a new shard at `target`, flushed; returns
    (legacy count, shard count). Raises when they differ."""
    import qdrant_edge as q
    from qdrant_client import QdrantClient

    from clarity.engines.migrate import pause
    from clarity.engines.qdrant_edge import edge_vectors, open_shard

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
                    pause(qdrant_path, "copy")
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
    ap = argparse.ArgumentParser(prog="python -m clarity.engines.migrate_child")
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
    lock_fd = os.open(a.qdrant_path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    report: dict[str, Any] = {"ok": False, "pid": os.getpid()}
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
