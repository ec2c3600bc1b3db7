"""Backups: a JSONL file with every point's id, payload and vector; restore into a fresh Edge shard.

Format: line 1 `{"format": "clarity-backup", "version": 1, "model", "dims", "count", "created_at"}`,
then one `{"id", "payload", "vector"}` per line. A backup is written to a temporary name and renamed
when complete (a half-written backup never has the final name). Restore builds the whole shard in a
new generation folder (`clarity.engines.edge.layout`), verifies the count, marks it `READY`, then makes
it current (`edge_layout.finish_restore`: the old shard goes to `<home>/backups/edge-replaced-*`); a
kill before `READY` leaves the store as it was (the next open removes the partial folder), a kill after
it is finished by the next open. Edge snapshots are not used: qdrant-edge-py 0.9
can unpack and apply snapshots but has no call that writes one.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from clarity.engines.base import Engine, iter_all

FORMAT = "clarity-backup"


def write_backup(engine: Engine, backups_dir: Path, model: str, dims: int) -> tuple[Path, int]:
    backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"{time.time() % 1:.6f}"[1:].replace(".", "-")
    final = backups_dir / f"clarity-backup-{stamp}.jsonl"
    tmp = backups_dir / f".{final.name}.{os.getpid()}.tmp"
    count = 0
    try:
        with open(tmp, "wb") as f:
            header = {"format": FORMAT, "version": 1, "model": model, "dims": dims,
                      "count": engine.count(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            f.write(orjson.dumps(header) + b"\n")
            for page in iter_all(engine, page_size=1024, with_vectors=True):
                for p in page:
                    f.write(orjson.dumps({"id": p.id, "payload": p.payload, "vector": p.vector}) + b"\n")
                    count += 1
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final, count


def read_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        first = f.readline()
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a clarity backup (its first line is not a clarity-backup header)")
    return header


def restore_into_edge(path: Path, qdrant_path: Path, expected_model: str) -> dict[str, Any]:
    """Replace the Edge shard with the backup at `path`. Caller holds the maintenance lock."""
    import qdrant_edge as q

    from clarity.engines.edge.layout import current_dir, finish_restore, mark_ready, new_generation
    from clarity.engines.edge.shard import edge_dir, edge_vectors, open_shard

    header = read_header(path)
    if header.get("model") != expected_model:
        raise ValueError(f"{path} was made with the model {header.get('model')!r}, this store uses "
                         f"{expected_model!r}: restore it into a home configured for that model")
    dims = int(header["dims"])
    base = edge_dir(qdrant_path)
    finish_restore(base)  # an earlier restore that a kill interrupted
    nxt = new_generation(base)
    shard = open_shard(nxt, dims)
    count = 0
    try:
        batch: list[Any] = []
        with open(path, "rb") as f:
            f.readline()
            for lineno, line in enumerate(f, start=2):
                if not line.strip():
                    continue
                try:
                    item = orjson.loads(line)
                    pt = q.Point(str(item["id"]), edge_vectors(item["vector"], item["payload"]), item["payload"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"{path}:{lineno}: not a backup record ({e})") from e
                batch.append(pt)
                if len(batch) >= 1024:
                    shard.update(q.UpdateOperation.upsert_points(batch))
                    count += len(batch)
                    batch = []
        if batch:
            shard.update(q.UpdateOperation.upsert_points(batch))
            count += len(batch)
        got = int(shard.count(q.CountRequest(exact=True)))
        if got != count or (header.get("count") is not None and int(header["count"]) != count):
            raise ValueError(f"{path}: the header says {header.get('count')} memories, read {count}, "
                             f"the new shard counts {got}: nothing restored")
        shard.flush()
    except BaseException:
        shard.close()
        shutil.rmtree(nxt, ignore_errors=True)
        raise
    shard.close()
    mark_ready(nxt, current_dir(base))
    finish_restore(base)
    return {"restored": count, "file": str(path)}
