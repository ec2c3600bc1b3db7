"""Durability: every write acknowledged before a SIGKILL is in the store after reopen.

A writer process upserts points as fast as it can (single points and batches, from two threads) and
prints each id to the test only after `upsert` returned (the acknowledgement). The test SIGKILLs it at
a random instant of the storm, reopens the shard and checks every acknowledged id with its payload.
Background flushes are disabled (flush_interval_s huge) so what survives is the WAL alone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from clarity.engines.edge.engine import EdgeEngine

WRITER = r"""
import sys, threading, uuid, random
from pathlib import Path
from clarity.engines.base import Point
from clarity.engines.edge.engine import EdgeEngine
e = EdgeEngine(Path(sys.argv[1]), flush_interval_s=3600)
e.ensure_collection(8)
out_lock = threading.Lock()
def storm(seed):
    rng = random.Random(seed)
    while True:
        n = rng.choice([1, 1, 1, 5, 20])
        pts = [Point(str(uuid.uuid4()), {"content": "x" * rng.randint(1, 2000), "memory_type": "note",
                                          "created_at": "2025-01-01T00:00:00+00:00", "content_hash": str(seed)},
                     [rng.uniform(-1, 1) for _ in range(8)]) for _ in range(n)]
        e.upsert(pts)
        with out_lock:
            sys.stdout.write("".join(f"{p.id} {len(p.payload['content'])}\n" for p in pts))
            sys.stdout.flush()
print("ready", flush=True)
threads = [threading.Thread(target=storm, args=(s,), daemon=True) for s in (1, 2)]
for t in threads: t.start()
for t in threads: t.join()
"""


def run_storm(path: Path, kill_after_s: float) -> dict[str, int]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            bufsize=1, env={**os.environ})
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    first = proc.stdout.readline()
    assert first.strip() == "ready", first

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 2:
                acked[parts[0]] = int(parts[1])

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(kill_after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    return acked


def test_every_ack_survives_sigkill_during_write_storms(tmp_path: Path) -> None:
    path = tmp_path / "edge"
    rng = random.Random(7)
    all_acked: dict[str, int] = {}
    for _round in range(4):
        acked = run_storm(path, rng.uniform(0.3, 1.5))
        assert len(acked) > 20, "the storm wrote too little to test anything"
        all_acked.update(acked)
        e = EdgeEngine(path, flush_interval_s=3600)
        e.ensure_collection(8)
        try:
            ids = list(all_acked)
            found = {}
            for start in range(0, len(ids), 1000):
                found.update({p.id: len(p.payload["content"]) for p in e.retrieve(ids[start:start + 1000])})
            missing = [i for i in ids if i not in found]
            assert not missing, f"{len(missing)} of {len(ids)} acknowledged writes lost after SIGKILL"
            assert found == all_acked
            assert e.count() >= len(all_acked)
        finally:
            e.close()
