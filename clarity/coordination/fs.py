"""All platform code of the coordination layer: locks, private folders, no-follow file operations.

Linux only (open-file-description locks, SO_PEERCRED, /proc). Elsewhere every function here raises
`UnsupportedPlatform` with a clear message instead of doing something subtly wrong.

Locks are Linux open-file-description locks (`F_OFD_SETLK` / `F_OFD_GETLK`, whole file). Unlike POSIX
record locks (`lockf`, fasteners' InterProcessLock) they belong to the open file, not the process:
closing another descriptor of the same file, or probing it from the holder's own process, never drops
them, and two descriptors in one process conflict like two processes. They die with the last
descriptor of their open file, so a killed process frees them at once. Guarantees:
- `OfdLock.acquire` never waits in the kernel: it polls with short sleeps until its deadline.
  `OfdLock.wait` is the one exception (F_OFD_SETLKW): the hot standby's background thread waits
  in the kernel on the lease lock, so it holds the lease the moment its holder dies. It has no
  deadline and cannot be interrupted; only a daemon thread whose process may exit under it calls it.
- `probe(path)` never takes or drops a lock and never blocks (not even on a FIFO planted there).
- `OfdLock.still_ours()` answers "do I hold it" in one question: our descriptor is open (so its lock
  is ours) and the path still names the file it locks.
- Files and folders are opened without following symlinks; anything that is not a regular file (or a
  folder, where one is expected), or that another user owns, is refused or skipped, never followed.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import struct
import sys
import time
import uuid
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from clarity.errors import ClarityError, UnsafeStore
from clarity.sysutil import fsync_dir

LINUX = sys.platform.startswith("linux")
if LINUX:
    import fcntl
_FLOCK = "hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid
_POLL_S = 0.01


class UnsupportedPlatform(ClarityError):
    kind = "config"


def require_linux(what: str) -> None:
    if not LINUX:
        raise UnsupportedPlatform(f"{what} needs Linux (open-file-description locks, SO_PEERCRED, /proc); "
                                  f"this is {sys.platform}. Point Clarity at a Qdrant server URL instead.")


class LockState(Enum):
    FREE = "free"
    SHARED = "shared"
    EXCLUSIVE = "exclusive"


def _flock(l_type: int) -> bytes:
    return struct.pack(_FLOCK, l_type, os.SEEK_SET, 0, 0, 0)  # l_pid must be 0 for OFD locks


def _who(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def describe(path: Path, st: os.stat_result) -> str:
    return f"{path} (owner {_who(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o})"


# ---- private folders ------------------------------------------------------------------------

def check_private_dir(path: Path, what: str = "store folder") -> None:
    """Refuse a folder that is a symlink, not a folder, owned by another user, or writable by group
    or others: someone else could plant files (a socket, a lock, a storage file) there."""
    require_linux("the store's folder checks")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UnsafeStore(f"{what} {path} disappeared while Clarity was using it") from None
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink (Clarity never follows links inside a store)"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a folder"
    elif st.st_uid != os.getuid():
        problem = f"belongs to another user (you are {_who(os.getuid())})"
    elif st.st_mode & 0o022:
        problem = "is writable by group or others"
    if problem:
        raise UnsafeStore(
            f"refusing to use {what} {describe(path, st)}: it {problem}, so another user could control "
            f"this store. Fix: if you trust its content, `chown {os.getuid()} {path} && chmod 700 {path}`; "
            f"otherwise remove it (or choose another --home / CLARITY_HOME)."
        )


def ensure_private_dir(path: Path, what: str = "store folder") -> None:
    """Create `path` mode 0700 if missing, then `check_private_dir` it (idempotent, race-safe)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_private_dir(path, what)


# ---- no-follow files ------------------------------------------------------------------------

def open_nofollow(path: Path, flags: int, mode: int = 0o600, dir_fd: int | None = None) -> int:
    """os.open with O_NOFOLLOW | O_CLOEXEC; refuses anything but a regular file of this user."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise UnsafeStore(f"refusing {describe(path, st)}: not a regular file of this user")
    return fd


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path`: a fresh temp file (O_EXCL, never through a link), fsync, rename over
    `path` (a symlink there is replaced, its target untouched), fsync the folder. Readers see the old
    or the new content, never half; after return it survives a power cut."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, orjson.dumps(data))


def read_bytes_nofollow(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The content of regular file `path` (None if missing, a link, not ours or not regular)."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except (OSError, UnsafeStore):
        return None
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unsafe or not a JSON object."""
    raw = read_bytes_nofollow(path)
    try:
        data = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def unlink_quiet(path: Path, dir_fd: int | None = None) -> bool:
    """Remove the directory entry (a link itself, never its target). False when already gone."""
    try:
        os.unlink(path, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


# ---- locks ----------------------------------------------------------------------------------

def probe(path: Path, dir_fd: int | None = None) -> LockState | None:
    """How `path` is locked (OFD or POSIX locks alike), or None when it is missing or not a regular
    file of this user. Takes nothing, drops nothing, never blocks."""
    require_linux("lock probing")
    try:
        fd = open_nofollow(path, os.O_RDONLY, dir_fd=dir_fd)
    except (OSError, UnsafeStore):
        return None
    try:
        l_type = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK)))[0]
    finally:
        os.close(fd)
    if l_type == fcntl.F_UNLCK:
        return LockState.FREE
    return LockState.SHARED if l_type == fcntl.F_RDLCK else LockState.EXCLUSIVE


def lock_fd(fd: int, exclusive: bool) -> bool:
    """Take (or convert) the OFD lock of open file `fd` without waiting; False when it is held."""
    require_linux("the store's locks")
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK))
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class OfdLock:
    """A whole-file OFD lock on one regular file of this user, held through one descriptor.
    Not thread-safe: its owner serializes calls."""

    def __init__(self, path: Path) -> None:
        require_linux("the store's locks")
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
        """Take (or convert to) the shared or exclusive lock without waiting. A failed conversion
        keeps the lock held before."""
        if not lock_fd(self._open(), exclusive):
            if self.state is LockState.FREE:
                self.close()  # keep no descriptor of a lock we do not have
            return False
        self.state = LockState.EXCLUSIVE if exclusive else LockState.SHARED
        return True

    def acquire(self, exclusive: bool, deadline: float) -> bool:
        """`try_lock` until it succeeds or `deadline` (time.monotonic()) passes."""
        while not self.try_lock(exclusive):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(_POLL_S * 5, max(0.0, deadline - time.monotonic())) or _POLL_S)
        return True

    def wait(self, exclusive: bool) -> None:
        """Take the lock, waiting in the kernel (F_OFD_SETLKW) for as long as another holds it.
        No deadline: call it only from a daemon thread (see the module docstring)."""
        fd = self._open()
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _flock(fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK))
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


# ---- processes ------------------------------------------------------------------------------

def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (in this pid namespace) in clock ticks since boot."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace, e.g. 'pid:[4026531836]' (containers each have their own)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def peer_uid(sock: Any) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    import socket

    require_linux("checking who serves the owner's socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid
