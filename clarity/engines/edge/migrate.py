"""Legacy store -> Edge, exactly once, under the maintenance (exclusive) side of the coordination lock.

A home written by the qdrant-client version holds `<home>/qdrant/meta.json` and
`<home>/qdrant/collection/<name>/`. `migrate_if_needed` moves it to the Edge shard in
`<home>/qdrant/edge/` the first time an owner opens the engine:

1. build the shard in `<home>/qdrant/edge.migrating/` (a leftover one from a killed run is discarded,
   once no child of that run is alive): a child process (`clarity.engines.edge.migrate_child`, run by
   `clarity.platform.children.run_child` with a deadline, dying with this process) copies ids, vectors
   and payloads in batches (read by `clarity.engines.qdrant_local`, which never runs code from the
   store's pickles; written in the engine's payload encoding, so every value comes back exactly),
   verifies the count and flushes, then gives the shard its quick index (int8 copies of the vectors, see
   `clarity.engines.edge.build_child.quick_index`: the first index build after the swap takes minutes
   at 100k, and the store searches its quantised vectors meanwhile instead of every float vector), so
   whatever reading the legacy store cost dies with it; this process
   counts the shard again; write the marker `clarity-migrated.json` (source count, backup folder name)
   inside it;
2. commit: rename `edge.migrating` -> `edge` (atomic);
3. move the legacy files into `<home>/backups/<name from the marker>/`, `meta.json` last.

This process holds the maintenance lock all along and never imports qdrant_client. A failed, killed or
overdue child raises `MigrationFailed` (the legacy store untouched, the temporary folder removed).
A kill before 2 leaves the legacy store untouched (the next owner rebuilds from scratch); a kill after
2 leaves a complete shard (the next owner only finishes step 3). The legacy files are never deleted.
`meta.json` being present is the trigger; once it has moved, no check touches the disk beyond one stat.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

from clarity import faults
from clarity.config import Settings
from clarity.engines.edge.migrate_child import LOCK_FILE
from clarity.engines.edge.shard import edge_dir, open_shard
from clarity.errors import ClarityError, MigrationFailed
from clarity.platform.children import run_child
from clarity.platform.files import sync_dir
from clarity.platform.locks import try_lock_file

log = logging.getLogger(__name__)

MARKER = "clarity-migrated.json"
LEGACY_ITEMS = ("collection", "aliases", ".lock", "meta.json")  # meta.json last: it is the trigger
LOCK_WAIT_S = 60.0


def legacy_present(qdrant_path: Path) -> bool:
    return (qdrant_path / "meta.json").is_file()


def deadline_s(qdrant_path: Path, override: float | None = None) -> float:
    """`override` (engine.migrate_deadline_s), else 10 minutes plus 2 s per MiB of legacy files
    (100k memories took ~45 s here)."""
    if override:
        return override
    size = sum(f.stat().st_size for f in (qdrant_path / "collection").rglob("*") if f.is_file())
    return 600.0 + 2.0 * size / (1 << 20)


def wait_for_previous_child(lock_path: Path, timeout_s: float = LOCK_WAIT_S) -> None:
    """Return once no (dying or orphaned) migration child holds `lock_path`; MigrationFailed after
    `timeout_s`."""
    end = time.monotonic() + timeout_s
    while True:
        lock = try_lock_file(lock_path)
        if lock is not None:
            lock.close()
            return
        if time.monotonic() > end:
            raise MigrationFailed(f"a previous migration process still holds {lock_path} after "
                                  f"{timeout_s:.0f} s; nothing changed, the legacy store stays")
        time.sleep(0.05)


def run_copy(qdrant_path: Path, target: Path, dim: int, collection: str,
             deadline_override: float | None = None) -> dict[str, Any]:
    """Run the copy in a child; returns its report ({"count", "pid", "seconds"}) once the parent has
    checked it. Raises MigrationFailed (legacy store untouched) otherwise. The caller has waited for
    any earlier child first (`wait_for_previous_child`, before it cleared the target folder)."""
    cmd = [sys.executable, "-m", "clarity.engines.edge.migrate_child", "--parent-pid", str(os.getpid()),
           "--qdrant-path", str(qdrant_path), "--target", str(target), "--dim", str(dim),
           "--collection", collection]
    log_file = next((h.baseFilename for h in logging.getLogger().handlers
                     if isinstance(h, logging.FileHandler)), None)
    if log_file:
        cmd += ["--log-file", log_file]
    limit = deadline_s(qdrant_path, deadline_override)
    try:
        done = run_child(cmd, limit, capture_stdout=True)
    except ClarityError as e:  # ChildTimeout
        raise MigrationFailed(f"the migration's copy did not finish within {limit:.0f} s ({e}); "
                              "nothing changed, the legacy store stays") from None
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        report: dict[str, Any] = orjson.loads(lines[-1]) if lines else {}
    except orjson.JSONDecodeError:
        report = {"error": f"unreadable report {lines[-1][:200]!r}"}
    if done.returncode != 0 or not report.get("ok"):
        raise MigrationFailed(f"the migration's copy failed (exit code {done.returncode}): "
                              f"{report.get('error', 'no report')}; nothing changed, the legacy store stays")
    if report.get("count") != report.get("shard_count") or not isinstance(report.get("count"), int):
        raise MigrationFailed(f"the migration's copy reported {report.get('count')} legacy points but "
                              f"{report.get('shard_count')} in the shard; nothing changed, the legacy store stays")
    report["seconds"] = round(done.seconds, 3)
    return report


def _unique(parent: Path, name: str) -> Path:
    """A new folder `parent/name` (or `name-2`, `name-3`, ...), created mode 0700."""
    n = 1
    while True:
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir(mode=0o700, parents=True)
            return folder
        except FileExistsError:
            n += 1


def migrate_if_needed(settings: Settings, dim: int,
                      exclusive: Callable[[], AbstractContextManager[None]]) -> dict[str, Any] | None:
    """Migrate when the engine is Edge and a legacy store is present; None when nothing to do."""
    if settings.engine.kind != "edge" or not legacy_present(settings.qdrant_path):
        return None
    with exclusive():
        if not legacy_present(settings.qdrant_path):
            return None
        return migrate(settings.qdrant_path, settings.backups_dir, dim, settings.engine.collection,
                       settings.engine.migrate_deadline_s)


def _verify_shard(target: Path, dim: int, expected: int) -> None:
    """Count the shard the child built, in this process: the child's word is not enough."""
    import qdrant_edge as q

    shard = open_shard(target, dim)
    try:
        got = int(shard.count(q.CountRequest(exact=True)))
    finally:
        shard.close()
    if got != expected:
        raise MigrationFailed(f"the migrated shard holds {got} points, the legacy store {expected}: "
                              "nothing changed, the legacy store stays")


def migrate(qdrant_path: Path, backups_dir: Path, dim: int, collection: str = "memories",
            deadline_override: float | None = None) -> dict[str, Any]:
    """Run (or finish) the migration; see the module docstring. Caller holds the maintenance lock."""
    t0 = time.perf_counter()
    final = edge_dir(qdrant_path)
    if not final.exists():
        tmp = qdrant_path / "edge.migrating"
        wait_for_previous_child(qdrant_path / LOCK_FILE)  # a killed run's child may still be dying
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("migrating the qdrant-client store in %s to Qdrant Edge (in a child process)", qdrant_path)
        try:
            report = run_copy(qdrant_path, tmp, dim, collection, deadline_override)
            count = int(report["count"])
            _verify_shard(tmp, dim, count)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            (qdrant_path / LOCK_FILE).unlink(missing_ok=True)  # the child is gone (run_copy waited for it)
            raise
        child = {"child_pid": report["pid"], "copy_seconds": report["seconds"],
                 "quick_index_seconds": report.get("quick_index_s")}
        name = f"qdrant-client-{time.strftime('%Y%m%dT%H%M%S')}"
        (tmp / MARKER).write_bytes(orjson.dumps({"count": count, "backup": name, "collection": collection}))
        sync_dir(tmp)
        faults.point("migrate.before-commit")
        os.rename(tmp, final)
        sync_dir(qdrant_path)
    else:
        child = {}
        log.info("finishing an interrupted migration in %s", qdrant_path)
    marker = final / MARKER
    info: dict[str, Any] = orjson.loads(marker.read_bytes()) if marker.exists() else {
        "count": None, "backup": f"qdrant-client-{time.strftime('%Y%m%dT%H%M%S')}"}
    if not marker.exists():
        log.warning("an Edge shard already exists beside a legacy store: the legacy files are only moved "
                     "to backups/%s (import them with `clarity import --qdrant-path`)", info["backup"])
    faults.point("migrate.after-commit")
    dest = backups_dir / str(info["backup"])
    dest.mkdir(parents=True, exist_ok=True)
    aside: Path | None = None  # where legacy files written after a completed move go (see below)
    for item in LEGACY_ITEMS:
        src = qdrant_path / item
        if src.exists() or src.is_symlink():
            if item == "meta.json":
                faults.point("migrate.moving")
            target = dest / item
            if target.exists() or target.is_symlink():
                # a legacy store written beside the Edge one after the migration had moved the first one
                # (an older Clarity on this store): move it aside under a name of its own, never fail on it
                if aside is None:
                    aside = _unique(backups_dir, f"{info['backup']}-leftover-{time.strftime('%Y%m%dT%H%M%S')}")
                    log.warning("legacy store files written after the migration (by an older Clarity?) moved to "
                                "%s: import them with `clarity import --qdrant-path %s`", aside, aside)
                target = aside / item
            os.rename(src, target)
    (qdrant_path / LOCK_FILE).unlink(missing_ok=True)
    sync_dir(qdrant_path)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("migration done: %s points in %.1f s; the old files are in %s", info["count"], seconds, dest)
    return {"count": info["count"], "backup": str(dest), "seconds": seconds, **child}
