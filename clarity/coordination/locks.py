"""Lock probing and atomic files: the two primitives the lease is built from.

`fasteners.InterProcessLock` takes POSIX record locks (`lockf`). `holder_pid` asks the kernel who holds
one (`F_GETLK`) without taking it, so probing never gets in a taker's way. Caveats of POSIX record
locks, which callers must respect: a process never sees its own locks with `holder_pid`, and closing
*any* descriptor of a locked file drops the process's lock on it, so a process must never probe a
file it holds itself.
"""

from __future__ import annotations

import fcntl
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import orjson

_FLOCK = "hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid


def holder_pid(path: Path) -> int | None:
    """The pid holding a POSIX lock on any part of `path`, or None if it is free or missing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        l_type, _w, _s, _l, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return None if l_type == fcntl.F_UNLCK else int(pid)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path`: temp file, fsync, rename. Readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, orjson.dumps(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing or not a JSON object."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
