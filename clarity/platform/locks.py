"""Whole-file locks held through one open file: the one lock API of Clarity (the lease, the records
reader-writer lock, tickets, the standby role, the engine's fence and the migration's child lock).

Backends, chosen by capability when this module is imported (`BACKEND`):
- `ofd`, where `fcntl` has `F_OFD_SETLK`/`F_OFD_SETLKW`/`F_OFD_GETLK` (Linux): open-file-description
  record locks over the whole file. `probe` asks the kernel (F_OFD_GETLK) and takes nothing.
- `flock`, everywhere else (macOS, the BSDs; a Linux interpreter without the F_OFD_* names): `flock`.
  `probe` tries the exclusive, then the shared lock on a fresh open file, never waiting, and drops
  what it got at once.

What both guarantee:
- A lock belongs to the open file, not the process (unlike POSIX `lockf` locks, fasteners'
  InterProcessLock among them): closing another descriptor of the same file, or probing it from the
  holder's own process, never drops it, and two opens in one process conflict like two processes.
  It dies with the last descriptor of its open file, so a killed process frees it at once.
- `FileLock.acquire` never waits in the kernel: it polls with short sleeps until its deadline.
  `FileLock.wait` is the one exception: the hot standby's background thread waits in the kernel on
  the lease lock, so it holds the lease the moment its holder dies. It has no deadline and cannot be
  interrupted; only a daemon thread whose process may exit under it calls it.
- `probe(path)` never blocks (not even on a FIFO planted there) and never drops a lock anyone holds.
- `FileLock.still_ours()` answers "do I hold it" in one question: our descriptor is open (so its lock
  is ours) and the path still names the file it locks.

Where they differ:
- A conversion (shared <-> exclusive): `ofd` converts atomically, and a refused conversion keeps the
  lock held before. `flock` releases the old lock before it takes the new one (the kernel documents
  it, Linux and BSD alike), so another process may slip in: a refused conversion then tries to take
  the old lock back, and when even that is refused the lock is lost (`state` FREE, descriptor
  closed), which `still_ours()` reports, so an owner steps down instead of running unfenced.
- A `flock` probe holds a lock for a few microseconds: a non-blocking attempt by another process at
  that instant is refused and, like every attempt in Clarity, tried again within its deadline.
- `flock` sees only `flock` locks and `ofd` sees record locks: every Clarity process on one machine
  picks the same backend (the same interpreter), so both sides of a lock always use one kind.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from enum import Enum
from pathlib import Path

from clarity.errors import UnsafeStore
from clarity.platform.files import open_nofollow

try:
    import fcntl
except ImportError:  # Windows: clarity.platform.require_posix explains
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_OFD_NAMES = ("F_OFD_SETLK", "F_OFD_SETLKW", "F_OFD_GETLK")
BACKEND = "ofd" if fcntl is not None and all(hasattr(fcntl, n) for n in _OFD_NAMES) else "flock"
_FLOCK_STRUCT = "hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid
_POLL_S = 0.01


class LockState(Enum):
    FREE = "free"
    SHARED = "shared"
    EXCLUSIVE = "exclusive"


# ---- the two backends: take without waiting, wait, probe an open file -------------------------

class _Ofd:
    name = "ofd"

    @staticmethod
    def _arg(l_type: int) -> bytes:
        return struct.pack(_FLOCK_STRUCT, l_type, os.SEEK_SET, 0, 0, 0)  # l_pid must be 0 for OFD locks

    def take(self, fd: int, exclusive: bool) -> bool:
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, self._arg(fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def wait(self, fd: int, exclusive: bool) -> None:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, self._arg(fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK))

    def probe_fd(self, fd: int) -> LockState:
        l_type = struct.unpack(_FLOCK_STRUCT, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, self._arg(fcntl.F_WRLCK)))[0]
        if l_type == fcntl.F_UNLCK:
            return LockState.FREE
        return LockState.SHARED if l_type == fcntl.F_RDLCK else LockState.EXCLUSIVE


class _Flock:
    name = "flock"

    def take(self, fd: int, exclusive: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def wait(self, fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def probe_fd(self, fd: int) -> LockState:
        """`fd` is a fresh open file of its own: what it can get without waiting says what others hold."""
        if self.take(fd, exclusive=True):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return LockState.FREE
        if self.take(fd, exclusive=False):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return LockState.SHARED
        return LockState.EXCLUSIVE


_backend: _Ofd | _Flock = _Ofd() if BACKEND == "ofd" else _Flock()


# ---- the API ---------------------------------------------------------------------------------

def probe(path: Path, dir_fd: int | None = None) -> LockState | None:
    """How `path` is locked, or None when it is missing or not a regular file of this user. Never
    blocks, never drops a lock anyone holds (see the module docstring)."""
    try:
        fd = open_nofollow(path, os.O_RDONLY, dir_fd=dir_fd)
    except (OSError, UnsafeStore):
        return None
    try:
        return _backend.probe_fd(fd)
    finally:
        os.close(fd)


def lock_fd(fd: int, exclusive: bool) -> bool:
    """Take the lock of open file `fd` (a file nobody else can have locked yet, or a fresh lock)
    without waiting; False when it is held."""
    return _backend.take(fd, exclusive)


class FileLock:
    """A whole-file lock on one regular file of this user, held through one descriptor.
    Not thread-safe: its owner serializes calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.state = LockState.FREE
        self._ident: tuple[int, int] | None = None

    def _open(self) -> int:
        if self.fd is None:
            self.fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
            st = os.fstat(self.fd)
            self._ident = (st.st_dev, st.st_ino)
        return self.fd

    def try_lock(self, exclusive: bool) -> bool:
        """Take (or convert to) the shared or exclusive lock without waiting. A refused conversion
        keeps the lock held before where the backend can (see the module docstring)."""
        before = self.state
        if _backend.take(self._open(), exclusive):
            self.state = LockState.EXCLUSIVE if exclusive else LockState.SHARED
            return True
        if before is not LockState.FREE and BACKEND == "flock" and self.fd is not None:
            # flock dropped the old lock before refusing the new one: take the old one back
            if not _backend.take(self.fd, before is LockState.EXCLUSIVE):
                log.warning("lock %s: lost while converting it (flock converts by release + take)", self.path)
                self.close()
            return False
        if self.state is LockState.FREE:
            self.close()  # keep no descriptor of a lock we do not have
        return False

    def acquire(self, exclusive: bool, deadline: float) -> bool:
        """`try_lock` until it succeeds or `deadline` (time.monotonic()) passes."""
        while not self.try_lock(exclusive):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(_POLL_S * 5, max(0.0, deadline - time.monotonic())) or _POLL_S)
        return True

    def wait(self, exclusive: bool) -> None:
        """Take the lock, waiting in the kernel for as long as another holds it. No deadline: call it
        only from a daemon thread (see the module docstring)."""
        _backend.wait(self._open(), exclusive)
        self.state = LockState.EXCLUSIVE if exclusive else LockState.SHARED

    def still_ours(self) -> bool:
        """We hold it and `path` still names the file we lock (not deleted, not replaced)."""
        if self.fd is None or self.state is LockState.FREE or self._ident is None:
            return False
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def close(self) -> None:
        """Drop the lock: closing our descriptor releases it (and only it)."""
        fd, self.fd, self.state, self._ident = self.fd, None, LockState.FREE, None
        if fd is not None:
            os.close(fd)


def try_lock_file(path: Path, exclusive: bool = True) -> FileLock | None:
    """A `FileLock` on `path` taken without waiting (created 0600 if missing), or None when another
    open file holds it."""
    lock = FileLock(path)
    return lock if lock.try_lock(exclusive) else None
