"""Maintenance that must exclude every owner (restore, migration, doctor's cleanup).

`maintenance(settings, timeout_s)` holds the exclusive side of `records.lock` (every owner holds its
shared side for its whole tenure) and the lease lock (so nobody is half-way through taking the lease)
for the block. It returns once no process owns the store and none can become owner until the block
ends; it raises CoordinationTimeout when that cannot be had within `timeout_s` (it polls, it never
waits in the kernel). An owner that needs such a block for itself uses `Lease.exclusive()` instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from clarity.config import Settings
from clarity.coordination.lease import Lease
from clarity.errors import CoordinationTimeout
from clarity.platform import locks


@contextmanager
def maintenance(settings: Settings, timeout_s: float = 30.0) -> Iterator[None]:
    lease = Lease(settings.coordination_dir)
    lease.ensure_dirs()
    deadline = time.monotonic() + timeout_s
    records = locks.FileLock(lease.records_path)
    lock = locks.FileLock(lease.lock_path)
    try:
        if not records.acquire(exclusive=True, deadline=deadline) or not lock.acquire(True, deadline):
            rec = lease.read_record() or {}
            raise CoordinationTimeout(
                f"the store is in use (owner pid {rec.get('pid')}, epoch {rec.get('epoch')}): no maintenance "
                f"possible within {timeout_s:g} s; stop its sessions first"
            )
        yield
    finally:
        lock.close()
        records.close()
