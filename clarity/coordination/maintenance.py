"""Maintenance that must exclude every owner (restore, migration, doctor's cleanup).

`maintenance(settings, timeout_s)` returns once no process owns the store and none can become owner
until the block ends; it raises CoordinationTimeout when that cannot be had within `timeout_s`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import fasteners

from clarity.config import Settings
from clarity.errors import CoordinationTimeout


@contextmanager
def maintenance(settings: Settings, timeout_s: float = 30.0) -> Iterator[None]:
    lock = fasteners.InterProcessLock(str(settings.coordination_dir / "lease.lock"))
    deadline = time.monotonic() + timeout_s
    while not lock.acquire(blocking=False):
        if time.monotonic() >= deadline:
            raise CoordinationTimeout(f"the store is in use: no maintenance possible within {timeout_s:g} s")
        time.sleep(0.05)
    try:
        yield
    finally:
        lock.release()
