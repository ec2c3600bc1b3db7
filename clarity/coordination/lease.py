"""The lease: who owns the engine. The lease lock, the lease record, the epoch, the records lock.

Files in `<home>/qdrant/.qdrant_coordination/` (a private folder: this user, mode 0700, never a link):
- `lease.lock`: the owner holds an exclusive OFD lock on it (see `fs`). The kernel drops it when the
  owner dies, so a killed owner frees the lease at once. Probing it (status, doctor, other processes,
  even the owner's own process) never drops it.
- `records.lock`: a reader-writer lock. The owner holds its shared side for its whole tenure;
  maintenance (`maintenance.maintenance`: restore, migration, doctor's cleanup) takes the exclusive
  side, so it excludes every owner. The owner can upgrade to exclusive for a block (`exclusive()`),
  e.g. the engine's one-time migration.
- `lease.json`: the record (pid, pid namespace, host, start time, version (the owner's Clarity
  version), protocol (its `wire.PROTOCOL`; a record without one is from Clarity 0.1.x, protocol 1),
  socket, mode, epoch, acquired_at, heartbeat_at, released_at). A session reads the owner's protocol
  here before it sends anything to the owner (peer_client.py). Only the lease holder writes it,
  atomically (temp, fsync, rename, never through a link), so it needs no lock to read. A step-down
  stamps `released_at`.
- `epoch` (and `../.qdrant_coordination.epoch`, which survives deletion of the folder): `epoch` grows
  by one at every acquisition, so a garbage record does not reset it.
- On a full file system (ENOSPC, EDQUOT) an acquisition that cannot write the epoch or the record still
  takes the lease, with a warning: the lock is what fences, these files are informational (the epoch
  then does not grow for that tenure; sessions that read the old record cannot reach this owner until
  it can write one, while this process serves its own session's reads).

Fencing: the engine's own storage lock is the hard fence (qdrant-client's `.lock` flock, Qdrant Edge's
WAL lock): two processes can never have the store open at once, whatever the lease says. The lease
decides whose turn it is; before each operation the owner asks `still_held()` (our descriptor's lock
is ours by construction, and `lease.lock` still names the file it locks) and a process that lost the
lease steps down and never applies another write. Not guaranteed: that an owner whose folder is
deleted between that check and its write notices before the write (the engine lock still fences it).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from clarity import __version__
from clarity.coordination.wire import PROTOCOL
from clarity.errors import CoordinationTimeout
from clarity.layout import CoordinationFiles
from clarity.platform import files, locks, processes

log = logging.getLogger(__name__)


class Lease:
    """One process's hold on the lease. Thread-safe."""

    def __init__(self, coord_dir: Path) -> None:
        self.dir = coord_dir
        self.files = f = CoordinationFiles(coord_dir)
        self.lock_path = f.lease_lock
        self.records_path = f.records_lock
        self.record_path = f.lease_record
        self.epoch_path = f.epoch
        self.epoch_backup = f.epoch_backup
        self.waiters_dir = f.waiters
        self._lease: locks.FileLock | None = None
        self._records: locks.FileLock | None = None
        self._state = threading.Lock()  # heartbeat vs release vs exclusive
        self.record: dict[str, Any] | None = None
        self.refused_by: str | None = None  # why the last try_acquire failed

    def ensure_dirs(self) -> None:
        files.ensure_private_dir(self.dir, "coordination folder")
        files.ensure_private_dir(self.waiters_dir, "waiters folder")

    def read_record(self) -> dict[str, Any] | None:
        """lease.json as last written (None if missing, unsafe or garbage). Takes no lock."""
        return files.read_json(self.record_path)

    @property
    def held(self) -> bool:
        return self._lease is not None

    @property
    def epoch(self) -> int | None:
        return self.record["epoch"] if self.record else None

    def still_held(self) -> bool:
        """This process holds the lease now: its locks are open and `lease.lock` / `records.lock`
        are still the files they lock. False after release or when the folder was replaced."""
        with self._state:
            return (self._lease is not None and self._records is not None
                    and self._lease.still_ours() and self._records.still_ours())

    def _next_epoch(self) -> tuple[int, dict[str, Any]]:
        previous = self.read_record() or {}
        counter = 0
        for path in (self.epoch_path, self.epoch_backup):
            raw = files.read_bytes_nofollow(path, 64)
            try:
                counter = max(counter, int((raw or b"0").strip() or 0))
            except ValueError:
                pass
        prev = previous.get("epoch")
        return max(counter, prev if isinstance(prev, int) else 0) + 1, previous

    def try_acquire(self, socket_path: str | None, mode: str, locked: locks.FileLock | None = None) -> bool:
        """Take the lease without waiting: the exclusive lease lock, then the shared records lock
        (refused while maintenance holds it). On success write the epoch and the record. `locked`:
        a lease lock this process already holds (the hot standby's kernel wait); on failure it is
        closed (released) too."""
        if self.held:
            if locked is not None:
                locked.close()
            return True
        self.ensure_dirs()
        lease = locked if locked is not None else locks.FileLock(self.lock_path)
        if locked is None and not lease.try_lock(exclusive=True):
            self.refused_by = ("maintenance in progress (records.lock is held exclusively)"
                               if locks.probe(self.records_path) is locks.LockState.EXCLUSIVE
                               else "lease held by another process")
            return False
        records = locks.FileLock(self.records_path)
        if not records.try_lock(exclusive=False):
            lease.close()
            self.refused_by = "maintenance in progress (records.lock is held exclusively)"
            return False
        try:
            epoch, previous = self._next_epoch()
            now = time.time()
            record = {
                "pid": os.getpid(), "pid_namespace": processes.pid_namespace(), "host": socket.gethostname(),
                "start_time": processes.process_start_time(os.getpid()), "version": __version__,
                "protocol": PROTOCOL, "socket": socket_path, "mode": mode, "epoch": epoch,
                "acquired_at": now, "heartbeat_at": now, "released_at": None,
            }
            for path, data in ((self.epoch_path, str(epoch).encode()), (self.epoch_backup, str(epoch).encode()),
                               (self.record_path, orjson.dumps(record))):
                try:
                    files.publish(path, data)
                except OSError as e:
                    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    log.warning("lease: could not write %s (%s): holding the lease without it", path, e)
        except BaseException:
            records.close()
            lease.close()
            raise
        with self._state:
            self._lease, self._records, self.record = lease, records, record
        if previous.get("pid") not in (None, os.getpid()):
            log.info("lease: replaced the record of pid %s epoch %s", previous.get("pid"), previous.get("epoch"))
        log.info("lease: acquired, epoch %s", epoch)
        return True

    def heartbeat(self) -> bool:
        """Refresh heartbeat_at. False when this process no longer holds the lease (released, or its
        lock file was deleted or replaced); then it writes nothing."""
        if not self.still_held():
            return False
        with self._state:
            if self.record is None:
                return False
            self.record["heartbeat_at"] = time.time()
            try:
                files.publish_json(self.record_path, self.record)
            except OSError as e:
                log.warning("lease: heartbeat write failed: %s", e)
        return True

    def release(self) -> None:
        """Give up the lease: stamp `released_at` in the record (only if the lease is still ours),
        then close both locks. The record stays, for the epoch."""
        ours = self.still_held()
        with self._state:
            lease, records, self._lease, self._records = self._lease, self._records, None, None
            if lease is None:
                return
            if ours and self.record is not None:
                self.record["released_at"] = time.time()
                try:
                    files.publish_json(self.record_path, self.record)
                except OSError as e:
                    log.warning("lease: could not mark the record released: %s", e)
            if records is not None:
                records.close()
            lease.close()
        log.info("lease: released, epoch %s", self.epoch)

    @contextmanager
    def exclusive(self, timeout_s: float) -> Iterator[None]:
        """Hold the records lock exclusively for a block (nobody can run maintenance or look at the
        store's files in between); waits at most `timeout_s` for the upgrade, then downgrades."""
        with self._state:
            records = self._records
        if records is None:
            raise CoordinationTimeout("this process does not own the lease: no exclusive block")
        if not records.acquire(exclusive=True, deadline=time.monotonic() + timeout_s):
            raise CoordinationTimeout(f"could not hold the store exclusively within {timeout_s:g} s")
        try:
            yield
        finally:
            with self._state:
                if self._records is records:
                    records.try_lock(exclusive=False)  # a downgrade never fails
