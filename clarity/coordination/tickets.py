"""Waiter tickets (handoff): `waiters/<ns>-<pid>-<id>.json`, one per waiting process.

A ticket is created under a hidden name, locked (OFD, exclusive) through the descriptor that created
it, then renamed into place, so nobody ever sees it unlocked; its lock dies with its process, so a dead
waiter's ticket is seen to be stale. Names sort oldest first, which orders the waiters.

Guarantees: every operation works through a descriptor of the waiters folder opened with O_NOFOLLOW,
so a `waiters` symlink is refused, never followed; entries that are not regular files of this user
(symlinks, FIFOs, folders, garbage) are skipped and never removed; only a regular file whose lock is
free (and, for a hidden temp file, older than a minute) is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from clarity.platform import files, locks, processes

log = logging.getLogger(__name__)
_TEMP_GRACE_S = 60.0


@dataclass
class Ticket:
    path: Path
    fd: int
    ident: tuple[int, int]

    def remove(self) -> None:
        """Remove this ticket (only if the name still holds our file), then drop its lock."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.ident:
                files.unlink_quiet(self.path)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(self.fd)


@contextmanager
def _folder(waiters: Path) -> Iterator[int | None]:
    """A descriptor of the waiters folder (None when it is missing); UnsafeStore when it is a link
    or not this user's private folder."""
    try:
        fd = os.open(waiters, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    except OSError:  # ELOOP / ENOTDIR: a symlink or a file where the folder should be
        files.check_private_dir(waiters, "waiters folder")
        raise
    try:
        files.check_private_dir(waiters, "waiters folder")
        yield fd
    finally:
        os.close(fd)


def _regular(name: str, dfd: int) -> os.stat_result | None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() else None


def add(waiters: Path) -> Ticket:
    files.ensure_private_dir(waiters, "waiters folder")
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    tmp = waiters / f".{name}.tmp"
    fd = files.open_nofollow(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        if not locks.lock_fd(fd, exclusive=True):  # a fresh O_EXCL file: nobody else can hold it
            raise OSError(f"could not lock the new ticket {tmp}")
        os.write(fd, orjson.dumps({"pid": os.getpid(), "pid_namespace": processes.pid_namespace(),
                                   "since": time.time()}))
        final = waiters / name
        os.rename(tmp, final)
    except BaseException:
        files.unlink_quiet(tmp)
        os.close(fd)
        raise
    st = os.fstat(fd)
    return Ticket(final, fd, (st.st_dev, st.st_ino))


def live(waiters: Path, exclude: Path | None = None) -> list[dict[str, Any]]:
    """Tickets whose lock is held, oldest first; `exclude` (this process's own) is listed as own."""
    out: list[dict[str, Any]] = []
    with _folder(waiters) as dfd:
        if dfd is None:
            return out
        for name in sorted(n for n in os.listdir(dfd) if not n.startswith(".")):
            if exclude is not None and waiters / name == exclude:
                out.append({"ticket": name, "pid": os.getpid(), "since": None, "own": True})
                continue
            if _regular(name, dfd) is None:
                continue
            if locks.probe(Path(name), dir_fd=dfd) in (None, locks.LockState.FREE):
                continue
            raw = _read(name, dfd)
            out.append({"ticket": name, "pid": raw.get("pid"), "since": raw.get("since"), "own": False})
    return out


def _read(name: str, dfd: int) -> dict[str, Any]:
    try:
        fd = files.open_nofollow(Path(name), os.O_RDONLY, dir_fd=dfd)
    except Exception:
        return {}
    try:
        data = orjson.loads(os.read(fd, 4096))
    except (OSError, orjson.JSONDecodeError):
        return {}
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


def cleanup_stale(waiters: Path, own: Path | None = None) -> list[str]:
    """Remove tickets and temp files whose lock is free; returns what was removed."""
    removed: list[str] = []
    with _folder(waiters) as dfd:
        if dfd is None:
            return removed
        for name in os.listdir(dfd):
            if own is not None and waiters / name == own:
                continue
            st = _regular(name, dfd)
            if st is None:
                log.warning("waiters: skipped %s: not a regular file of this user", waiters / name)
                continue
            if name.startswith(".") and time.time() - st.st_mtime < _TEMP_GRACE_S:
                continue
            if locks.probe(Path(name), dir_fd=dfd) is locks.LockState.FREE and files.unlink_quiet(Path(name), dfd):
                removed.append(f"waiter ticket {name}")
    return removed
