"""Legacy store -> Edge, exactly once, under the maintenance (exclusive) side of the coordination lock.

A home written by the qdrant-client version holds `<home>/qdrant/meta.json` and
`<home>/qdrant/collection/<name>/`. `migrate_if_needed` moves it to the Edge shard in
`<home>/qdrant/edge/` the first time an owner opens the engine:

1. build the shard in `<home>/qdrant/edge.migrating/` (a leftover one from a killed run is discarded),
   copying ids, vectors and payloads in batches; verify the count; flush; write the marker
   `clarity-migrated.json` (source count, backup folder name) inside it;
2. commit: rename `edge.migrating` -> `edge` (atomic);
3. move the legacy files into `<home>/backups/<name from the marker>/`, `meta.json` last.

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
from clarity.engines.qdrant_edge import edge_dir, edge_vectors, open_shard

log = logging.getLogger(__name__)

MARKER = "clarity-migrated.json"
LEGACY_ITEMS = ("collection", "aliases", ".lock", "meta.json")  # meta.json last: it is the trigger
BATCH = 4096
PAUSE_ENV = "CLARITY_TEST_MIGRATE_PAUSE"  # tests: "<stage>" makes the migration wait there (to be killed)


def legacy_present(qdrant_path: Path) -> bool:
    return (qdrant_path / "meta.json").is_file()


def _pause(qdrant_path: Path, stage: str) -> None:
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _vector(v: Any) -> list[float]:
    if isinstance(v, dict):  # a named vector: the first dense one
        v = next(x for x in v.values() if isinstance(x, list))
    return list(v)


def _copy(qdrant_path: Path, target: Path, dim: int, collection: str) -> int:
    """Copy every point of the legacy collection into a new shard at `target`; returns the count."""
    import qdrant_edge as q
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(qdrant_path))
    try:
        if not client.collection_exists(collection):
            expected = 0
        else:
            expected = int(client.count(collection, exact=True).count)
        shard = open_shard(target, dim)
        try:
            copied = 0
            offset: Any = None
            while expected:
                recs, offset = client.scroll(collection, limit=BATCH, offset=offset, with_payload=True,
                                             with_vectors=True)
                pts = [q.Point(str(r.id), edge_vectors(_vector(r.vector), dict(r.payload or {})),
                               dict(r.payload or {})) for r in recs
                       if r.vector is not None]
                if pts:
                    shard.update(q.UpdateOperation.upsert_points(pts))
                copied += len(pts)
                if copied >= expected / 2:
                    _pause(qdrant_path, "copy")
                if offset is None:
                    break
            got = int(shard.count(q.CountRequest(exact=True)))
            if got != expected or copied != expected:
                raise RuntimeError(f"migration copied {copied} points, the shard counts {got}, "
                                   f"the legacy store {expected}: nothing changed, the legacy store stays")
            shard.flush()
        finally:
            shard.close()
        return expected
    finally:
        client.close()


def migrate(qdrant_path: Path, backups_dir: Path, dim: int, collection: str = "memories") -> dict[str, Any]:
    """Run (or finish) the migration; see the module docstring. Caller holds the maintenance lock."""
    t0 = time.perf_counter()
    final = edge_dir(qdrant_path)
    if not final.exists():
        tmp = qdrant_path / "edge.migrating"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("migrating the qdrant-client store in %s to Qdrant Edge", qdrant_path)
        count = _copy(qdrant_path, tmp, dim, collection)
        name = f"qdrant-client-{time.strftime('%Y%m%dT%H%M%S')}"
        (tmp / MARKER).write_bytes(orjson.dumps({"count": count, "backup": name, "collection": collection}))
        _fsync_dir(tmp)
        _pause(qdrant_path, "before-commit")
        os.rename(tmp, final)
        _fsync_dir(qdrant_path)
    else:
        log.info("finishing an interrupted migration in %s", qdrant_path)
    marker = final / MARKER
    info: dict[str, Any] = orjson.loads(marker.read_bytes()) if marker.exists() else {
        "count": None, "backup": f"qdrant-client-{time.strftime('%Y%m%dT%H%M%S')}"}
    if not marker.exists():
        log.warning("an Edge shard already exists beside a legacy store: the legacy files are only moved "
                     "to backups/%s (import them with `clarity import --qdrant-path`)", info["backup"])
    _pause(qdrant_path, "after-commit")
    dest = backups_dir / str(info["backup"])
    dest.mkdir(parents=True, exist_ok=True)
    for item in LEGACY_ITEMS:
        src = qdrant_path / item
        if src.exists() or src.is_symlink():
            if item == "meta.json":
                _pause(qdrant_path, "moving")
            os.rename(src, dest / item)
    _fsync_dir(qdrant_path)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("migration done: %s points in %.1f s; the old files are in %s", info["count"], seconds, dest)
    return {"count": info["count"], "backup": str(dest), "seconds": seconds}
