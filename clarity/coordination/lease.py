"""Who owns the engine: the lease lock, the lease record, waiter tickets and stale cleanup.

- `lease.lock`: the owner holds an exclusive `fasteners.InterProcessLock` on it. The kernel drops it
  when the owner dies, so a killed owner frees the lease at once.
- `lease.json`: the record (pid, host, start time, version, socket, epoch, acquired_at, heartbeat_at),
  written atomically under the write side of the `records.lock` reader-writer lock, read under its
  read side. `epoch` grows by one at every acquisition (also kept in `epoch`, so a garbage record does
  not reset it).
- `waiters/<ns>-<pid>-<id>.json`: one ticket per waiting process, locked by it while it lives, so
  tickets order the waiters (oldest first) and a dead waiter's ticket is seen to be stale.

Liveness is always decided by probing a lock (`holder_pid`), never by a pid alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fasteners

from clarity import __version__
from clarity.coordination.locks import holder_pid, process_start_time, read_json, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    path: Path
    lock: fasteners.InterProcessLock

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        finally:
            if self.lock.acquired:
                self.lock.release()


class Lease:
    """One process's view of the lease. Thread-safe."""

    def __init__(self, coord_dir: Path) -> None:
        self.dir = coord_dir
        self.lock_path = coord_dir / "lease.lock"
        self.record_path = coord_dir / "lease.json"
        self.epoch_path = coord_dir / "epoch"
        # a second copy outside the folder: deleting the whole folder does not reset epochs
        self.epoch_backup = coord_dir.parent / f"{coord_dir.name}.epoch"
        self.waiters_dir = coord_dir / "waiters"
        self._rw = fasteners.InterProcessReaderWriterLock(str(coord_dir / "records.lock"))
        self._rw_thread = threading.Lock()  # fasteners rw locks belong to the whole process
        self._lock: fasteners.InterProcessLock | None = None
        self._lock_ino: int | None = None
        self._state = threading.Lock()  # heartbeat vs release
        self.record: dict[str, Any] | None = None

    # ---- records lock ------------------------------------------------------------------------

    def _ensure_dirs(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.waiters_dir.mkdir(mode=0o700, exist_ok=True)

    def read_record(self) -> dict[str, Any] | None:
        """lease.json as last written (None if missing or garbage), read under the read lock."""
        if not self.dir.exists():
            return None
        with self._rw_thread, self._rw.read_lock():
            return read_json(self.record_path)

    def _write_record(self, record: dict[str, Any]) -> None:
        with self._rw_thread, self._rw.write_lock():
            write_json_atomic(self.record_path, record)

    # ---- the lease ---------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        return self._lock is not None

    @property
    def epoch(self) -> int | None:
        return self.record["epoch"] if self.record else None

    def holder(self) -> int | None:
        """pid holding the lease lock, as seen by another process (never call it while holding)."""
        return os.getpid() if self.held else holder_pid(self.lock_path)

    def try_acquire(self, socket_path: str | None, mode: str) -> bool:
        """Take the lease without waiting. On success, clean up leftovers and write the record."""
        if self.held:
            return True
        self._ensure_dirs()
        lock = fasteners.InterProcessLock(str(self.lock_path))
        if not lock.acquire(blocking=False):
            lock._do_close()  # type: ignore[attr-defined]  # keep no descriptor of a lock we lack
            return False
        assert lock.lockfile is not None
        self._lock, self._lock_ino = lock, os.fstat(lock.lockfile.fileno()).st_ino
        try:
            removed = self.cleanup_stale(own_lease=True)
            with self._rw_thread, self._rw.write_lock():
                previous = read_json(self.record_path) or {}
                counter = 0
                for path in (self.epoch_path, self.epoch_backup):
                    try:
                        counter = max(counter, int(path.read_text().strip() or 0))
                    except (OSError, ValueError):
                        pass
                prev = previous.get("epoch")
                prev_epoch: int = prev if isinstance(prev, int) else 0
                epoch = max(counter, prev_epoch) + 1
                now = time.time()
                self.record = {
                    "pid": os.getpid(), "host": socket.gethostname(),
                    "start_time": process_start_time(os.getpid()), "version": __version__,
                    "socket": socket_path, "mode": mode, "epoch": epoch,
                    "acquired_at": now, "heartbeat_at": now,
                }
                self.epoch_path.write_text(str(epoch))
                self.epoch_backup.write_text(str(epoch))
                write_json_atomic(self.record_path, self.record)
        except BaseException:
            self.release()
            raise
        if previous.get("pid") and previous.get("pid") != os.getpid():
            log.info("lease: replaced the record of pid %s epoch %s", previous.get("pid"), previous.get("epoch"))
        for what in removed:
            log.info("lease: removed stale %s", what)
        log.info("lease: acquired, epoch %s", epoch)
        return True

    def heartbeat(self) -> bool:
        """Refresh heartbeat_at. False when this process no longer really holds the lease (its
        lock file was deleted or replaced, e.g. the coordination folder was removed)."""
        with self._state:
            if not self.held or self.record is None:
                return False
            try:
                if os.stat(self.lock_path).st_ino != self._lock_ino:
                    return False
            except OSError:
                return False
            self.record["heartbeat_at"] = time.time()
            try:
                self._write_record(self.record)
            except OSError as e:
                log.warning("lease: heartbeat write failed: %s", e)
            return True

    def release(self) -> None:
        """Give up the lease (the record stays, for the epoch; its free lock marks it stale)."""
        with self._state:
            lock, self._lock, self._lock_ino = self._lock, None, None
        if lock is not None:
            try:
                lock.release()
            except Exception as e:  # the file may be gone; the kernel lock goes with the descriptor
                log.warning("lease: release: %s", e)
                lock._do_close()  # type: ignore[attr-defined]
            log.info("lease: released, epoch %s", self.epoch)

    # ---- waiters -----------------------------------------------------------------------------

    def add_ticket(self) -> Ticket:
        """Leave a ticket in waiters/: made under a hidden name, locked, then renamed into place,
        so nobody ever sees it unlocked."""
        self._ensure_dirs()
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.waiters_dir / f".{name}.tmp"
        write_json_atomic(tmp, {"pid": os.getpid(), "since": time.time()})
        lock = fasteners.InterProcessLock(str(tmp))
        lock.acquire()
        final = self.waiters_dir / name
        os.rename(tmp, final)
        lock.path = str(final)
        return Ticket(final, lock)

    def live_tickets(self, exclude: Path | None = None) -> list[dict[str, Any]]:
        """Tickets whose lock is held, oldest first (never probes `exclude`, this process's own)."""
        out = []
        try:
            names = sorted(p for p in os.listdir(self.waiters_dir) if not p.startswith("."))
        except OSError:
            return []
        for name in names:
            path = self.waiters_dir / name
            if exclude is not None and path == exclude:
                out.append({"ticket": name, "pid": os.getpid(), "since": None, "own": True})
                continue
            pid = holder_pid(path)
            if pid is not None:
                rec = read_json(path) or {}
                out.append({"ticket": name, "pid": pid, "since": rec.get("since"), "own": False})
        return out

    def cleanup_stale(self, own_lease: bool = False, own_ticket: Path | None = None) -> list[str]:
        """Remove tickets and temp files whose lock is free, and the record when the lease is free.
        Returns what was removed. `own_lease`: this process holds the lease (do not probe it)."""
        removed: list[str] = []
        try:
            names = os.listdir(self.waiters_dir)
        except OSError:
            names = []
        for name in names:
            path = self.waiters_dir / name
            if own_ticket is not None and path == own_ticket:
                continue
            if name.startswith("."):
                try:
                    if time.time() - path.stat().st_mtime < 60:
                        continue
                except OSError:
                    continue
            if holder_pid(path) is None:
                path.unlink(missing_ok=True)
                removed.append(f"waiter ticket {name}")
        for leftover in self.dir.glob(".*.tmp"):
            try:
                if time.time() - leftover.stat().st_mtime > 60:
                    leftover.unlink(missing_ok=True)
                    removed.append(f"temp file {leftover.name}")
            except OSError:
                pass
        if not own_lease and self.record_path.exists() and holder_pid(self.lock_path) is None:
            rec = read_json(self.record_path)
            if rec is None:
                self.record_path.unlink(missing_ok=True)
                removed.append("unreadable lease record")
        return removed

    def clean_if_free(self, socket_path: Path) -> list[str] | None:
        """For `clarity doctor`: when nobody holds the lease, take its lock for a moment and remove
        every leftover (record, socket, stale tickets). None when the lease is held."""
        if self.held:
            return self.cleanup_stale(own_lease=True)
        self._ensure_dirs()
        lock = fasteners.InterProcessLock(str(self.lock_path))
        if not lock.acquire(blocking=False):
            lock._do_close()  # type: ignore[attr-defined]
            return None
        try:
            removed = self.cleanup_stale(own_lease=True)
            if self.record_path.exists():
                self.record_path.unlink()
                removed.append("lease record of a dead owner")
            for sock in dict.fromkeys([socket_path, self.dir / "owner.sock"]):
                if sock.exists() or sock.is_symlink():
                    sock.unlink()
                    removed.append(f"socket {sock} of a dead owner")
            return removed
        finally:
            lock.release()
