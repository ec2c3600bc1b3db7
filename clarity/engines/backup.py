"""Backups: a JSONL file with every point's id, payload and vector (reading and restoring one:
`clarity.memory.restore`).

Format: line 1 `{"format": "clarity-backup", "version": 1, "model", "dims", "count", "created_at"}`,
then one `{"id", "payload", "vector"}` per line. A backup is written to a temporary name and renamed
when complete (a half-written backup never has the final name).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from clarity.engines.base import Engine, iter_all

FORMAT = "clarity-backup"
VERSION = 1
RECORD_KEYS = ("id", "payload", "vector")
MAX_HEADER_BYTES = 64 * 1024
MAX_DIMS = 65_536
WRITE_BATCH = 1024


def write_backup(engine: Engine, backups_dir: Path, model: str, dims: int) -> tuple[Path, int]:
    backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"{time.time() % 1:.6f}"[1:].replace(".", "-")
    final = backups_dir / f"clarity-backup-{stamp}.jsonl"
    tmp = backups_dir / f".{final.name}.{os.getpid()}.tmp"
    count = 0
    try:
        with open(tmp, "wb") as f:
            header = {"format": FORMAT, "version": VERSION, "model": model, "dims": dims,
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
