"""Shared pieces of the coordination unit tests: settings in `tmp_path`, a child process that holds a
lock (the pattern of tests/test_coordination.py `_holder`), and a small fake standing in for the memory
service and its embedding model (the tests here exercise coordination logic, not the service: the fake
records what it was asked to run, and can be told to block or fail)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clarity.config import Settings, load_settings

HOLD_LEASE = """
import sys, time
from pathlib import Path
from clarity.coordination.lease import Lease
assert Lease(Path(sys.argv[1])).try_acquire(None, "forward"); print("locked", flush=True); time.sleep(600)
"""
HOLD_LOCK = """
import sys, time
from pathlib import Path
from clarity.platform import locks
lock = locks.FileLock(Path(sys.argv[1])); assert lock.try_lock(True); print("locked", flush=True); time.sleep(600)
"""
HOLD_TICKET = """
import sys, time
from pathlib import Path
from clarity.coordination import tickets
t = tickets.add(Path(sys.argv[1])); print("locked", flush=True); time.sleep(600)
"""


def settings_for(tmp_path: Path, **coordination: Any) -> Settings:
    """Settings of a fresh home in `tmp_path`, with these `coordination.*` values."""
    s = load_settings(tmp_path / "home")
    for key, value in coordination.items():
        setattr(s.coordination, key, value)
    return s


class Holder:
    """A child process holding a lock (or the lease, or a ticket) until `kill()`."""

    def __init__(self, path: Path, script: str = HOLD_LOCK) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for(pred: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.01) -> bool:
    end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(step_s)
    return True


class FakeEmbedder:
    """Stands in for `clarity.encoders.dense.Embedder`: `embed_one` "loads" it (optionally waiting on
    `gate` first, to hold a load in progress)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.loaded = False
        self.calls = 0
        self.started = threading.Event()

    def embed_one(self, text: str) -> list[float]:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        self.calls += 1
        self.loaded = True
        return [0.0]


class FakeService:
    """Stands in for `clarity.memory.service.MemoryService` (see the module docstring)."""

    def __init__(self, embedder: Any = None) -> None:
        self.embedder = embedder if embedder is not None else FakeEmbedder()
        self.ran: list[tuple[str, Any]] = []
        self.batches: list[list[Any]] = []
        self.opened = 0
        self.closed = 0
        self.engine_open = False
        self.fail: BaseException | None = None  # raised by the next operation
        self.gate: threading.Event | None = None  # an operation waits on it (set: runs on)
        self.running = threading.Event()

    def open_engine(self) -> None:
        self.opened += 1
        self.engine_open = True

    def close(self) -> None:
        self.closed += 1
        self.engine_open = False

    def _start(self) -> None:
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        self.engine_open = True

    def execute(self, op: str, args: Any) -> dict[str, Any]:
        self._start()
        self.ran.append((op, args))
        return {"op": op, "args": args, "ran_here": True}

    def store_batch(self, batch: list[Any]) -> list[dict[str, Any]]:
        self._start()
        self.batches.append(list(batch))
        return [{"stored": True, "id": a["id"]} for a in batch]


class FakeBuild:
    """`build_service` for the tests: returns one FakeService and records how it was asked."""

    def __init__(self, service: FakeService | None = None) -> None:
        self.service = service
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Settings, exclusive: Any = None, embedder: Any = None) -> FakeService:
        self.calls.append({"exclusive": exclusive, "embedder": embedder})
        if self.service is None:
            self.service = FakeService(embedder)
        return self.service
