"""Legacy store -> Edge, exactly once, under the maintenance (exclusive) side of the coordination lock.

A home written by the qdrant-client version holds `<home>/qdrant/meta.json` and
`<home>/qdrant/collection/<name>/`. `migrate_if_needed` moves it to the Edge shard in
`<home>/qdrant/edge/` the first time an owner opens the engine:

1. build the shard in `<home>/qdrant/edge.migrating/` (a leftover one from a killed run is discarded,
   once no child of that run is alive): a child process (`clarity.engines.migrate_child`, with a
   deadline) copies ids, vectors and payloads in batches, verifies the count and flushes, so the
   legacy store's unpickled copy dies with it; this process counts the shard again; write the marker
   `clarity-migrated.json` (source count, backup folder name) inside it;
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
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

from clarity.config import Settings
from clarity.engines.migrate_child import LOCK_FILE, MigrationFailed, run_copy, wait_for_previous_child
from clarity.engines.qdrant_edge import edge_dir, open_shard
from clarity.sysutil import fsync_dir

log = logging.getLogger(__name__)

MARKER = "clarity-migrated.json"
LEGACY_ITEMS = ("collection", "aliases", ".lock", "meta.json")  # meta.json last: it is the trigger
PAUSE_ENV = "CLARITY_TEST_MIGRATE_PAUSE"  # tests: "<stage>" makes the migration wait there (to be killed)


def legacy_present(qdrant_path: Path) -> bool:
    return (qdrant_path / "meta.json").is_file()


def pause(qdrant_path: Path, stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        (qdrant_path.parent / f"migrate-paused-{stage}").write_text(str(os.getpid()))
        time.sleep(3600)


def migrate_if_needed(settings: Settings, dim: int,
                      exclusive: Callable[[], AbstractContextManager[None]]) -> dict[str, Any] | None:
    """Migrate when the engine is Edge and a legacy store is present; None when nothing to do."""
    if settings.engine.kind != "edge" or not legacy_present(settings.qdrant_path):
        return None
    with exclusive():
        if not legacy_present(settings.qdrant_path):
            return None
        return migrate(settings.qdrant_path, settings.backups_dir, dim, settings.engine.collection)


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


def migrate(qdrant_path: Path, backups_dir: Path, dim: int, collection: str = "memories") -> dict[str, Any]:
    """Run (or finish) the migration; see the module docstring. Caller holds the maintenance lock."""
    t0 = time.perf_counter()
    final = edge_dir(qdrant_path)
    if not final.exists():
        tmp = qdrant_path / "edge.migrating"
        wait_for_previous_child(qdrant_path / LOCK_FILE)  # a killed run's child may still be dying
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("migrating the qdrant-client store in %s to Qdrant Edge (in a child process)", qdrant_path)
        try:
            report = run_copy(qdrant_path, tmp, dim, collection)
            count = int(report["count"])
            _verify_shard(tmp, dim, count)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            (qdrant_path / LOCK_FILE).unlink(missing_ok=True)  # the child is gone (run_copy waited for it)
            raise
        child = {"child_pid": report["pid"], "copy_seconds": report["seconds"]}
        name = f"qdrant-client-{time.strftime('%Y%m%dT%H%M%S')}"
        (tmp / MARKER).write_bytes(orjson.dumps({"count": count, "backup": name, "collection": collection}))
        fsync_dir(tmp)
        pause(qdrant_path, "before-commit")
        os.rename(tmp, final)
        fsync_dir(qdrant_path)
    else:
        child = {}
        log.info("finishing an interrupted migration in %s", qdrant_path)
    marker = final / MARKER
    info: dict[str, Any] = orjson.loads(marker.read_bytes()) if marker.exists() else {
        "count": None, "backup": f"qdrant-client-{time.strftime('%Y%m%dT%H%M%S')}"}
    if not marker.exists():
        log.warning("an Edge shard already exists beside a legacy store: the legacy files are only moved "
                     "to backups/%s (import them with `clarity import --qdrant-path`)", info["backup"])
    pause(qdrant_path, "after-commit")
    dest = backups_dir / str(info["backup"])
    dest.mkdir(parents=True, exist_ok=True)
    for item in LEGACY_ITEMS:
        src = qdrant_path / item
        if src.exists() or src.is_symlink():
            if item == "meta.json":
                pause(qdrant_path, "moving")
            os.rename(src, dest / item)
    (qdrant_path / LOCK_FILE).unlink(missing_ok=True)
    fsync_dir(qdrant_path)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("migration done: %s points in %.1f s; the old files are in %s", info["count"], seconds, dest)
    return {"count": info["count"], "backup": str(dest), "seconds": seconds, **child}
