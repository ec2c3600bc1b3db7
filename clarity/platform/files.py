"""Files and folders: private folders, no-follow opens, durable syncs and the one atomic publish.

Guarantees:
- Files and folders are opened without following symlinks; anything that is not a regular file (or a
  folder, where one is expected), or that another user owns, is refused or skipped, never followed.
- `publish(path, data)` is the one write-temp-then-rename of Clarity: a fresh temp file beside `path`
  (O_EXCL, never through a link), synced, renamed over `path` (a symlink there is replaced, its target
  untouched), then the folder synced. Readers see the old content or the new, never half; once it
  returns, the new content survives a power cut. On failure the temp file is removed and `path` is
  unchanged.
- `sync_fd` reaches the disk: `F_FULLFSYNC` where `fcntl` has it (macOS: a plain fsync there only
  reaches the drive's cache), `fsync` elsewhere. `sync_dir` makes a rename or a new entry durable.
"""

from __future__ import annotations

import io
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from clarity.errors import UnsafeStore

try:
    import fcntl
    import pwd
except ImportError:  # Windows: clarity.platform.require_posix explains
    fcntl = None  # type: ignore[assignment]
    pwd = None  # type: ignore[assignment]

_FULLFSYNC: int | None = getattr(fcntl, "F_FULLFSYNC", None)


def who(uid: int) -> str:
    """`uid N (name)` for messages."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, AttributeError):
        return f"uid {uid}"


def describe(path: Path, st: os.stat_result) -> str:
    return f"{path} (owner {who(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o})"


# ---- durable syncs ----------------------------------------------------------------------------

def sync_fd(fd: int) -> None:
    """Flush `fd`'s data to the disk itself (F_FULLFSYNC where it exists, else fsync)."""
    if _FULLFSYNC is not None:
        try:
            fcntl.fcntl(fd, _FULLFSYNC)
            return
        except OSError:  # a file system without it (network, FUSE): fsync is the best there is
            pass
    os.fsync(fd)


def sync_dir(path: Path) -> None:
    """Make the entries of folder `path` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sync_fd(fd)
    finally:
        os.close(fd)


def regular_files(root: Path, *, topdown: bool = True) -> Iterator[int]:
    """A read-only descriptor of every regular file under `root`, each closed when the loop moves on.
    Links, FIFOs and anything else that is not a regular file are skipped, never followed or waited on
    (opened with O_NOFOLLOW | O_NONBLOCK); a file that cannot be opened is skipped."""
    for folder, _dirs, names in os.walk(root, topdown=topdown):
        for name in names:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:  # ELOOP: a symlink
                continue
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    yield fd
            finally:
                os.close(fd)


def sync_tree(root: Path) -> None:
    """Sync every regular file under `root`, then every folder, deepest first (`regular_files` skips
    the rest)."""
    for fd in regular_files(root, topdown=False):
        sync_fd(fd)
    for folder, _dirs, _names in os.walk(root, topdown=False):
        sync_dir(Path(folder))


# ---- private folders ------------------------------------------------------------------------

def check_private_dir(path: Path, what: str = "store folder") -> None:
    """Refuse a folder that is a symlink, not a folder, owned by another user, or writable by group
    or others: someone else could plant files (a socket, a lock, a storage file) there."""
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
        problem = f"belongs to another user (you are {who(os.getuid())})"
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
    """os.open with O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK (a FIFO planted there never blocks the open);
    refuses anything but a regular file of this user."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise UnsafeStore(f"refusing {describe(path, st)}: not a regular file of this user")
    return fd


def publish(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably (see the module docstring)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            sync_fd(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    sync_dir(path.parent)


def publish_json(path: Path, data: Any) -> None:
    publish(path, orjson.dumps(data))


def open_regular(path: Path) -> io.BufferedReader | None:
    """`path` opened for reading when it is a regular file, of any owner (a file the user handed to a
    command: a backup, another store); None when it is not one (a FIFO or a device is never read or
    waited on: the open does not block). OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
