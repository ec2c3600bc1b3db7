"""Disk space: how much a folder's file system has free, and backing a file's pages before a memory map
writes them (a page of a shared map that the file system cannot back raises SIGBUS in the writer,
which kills the process: Qdrant Edge writes its WAL and segments that way).

- `free_bytes(path)`: the bytes an unprivileged process may still allocate on `path`'s file system
  (`statvfs`: `f_bavail * f_frsize`; root may use the reserved blocks too, so this is conservative).
- `preallocate(path)`: allocate every block of the regular file `path` up to its current size without
  changing its content or size, so writing any of its pages (through a map too) never needs space.
  Backend, chosen by capability (`BACKEND`):
  - `fallocate`: the `fallocate(2)` system call (mode 0) where the C library has it (Linux). It either
    allocates or fails with ENOSPC/EOPNOTSUPP; it never writes data. `os.posix_fallocate` is not
    used on purpose: glibc emulates it on file systems without `fallocate` by reading and rewriting one
    byte per block, which races with another thread writing the same file through a map.
  - `none` elsewhere (macOS: `F_PREALLOCATE` only reserves space past the end of a file, not the holes
    of a sparse one): nothing is allocated (`preallocate` returns False), and the callers rely on their
    free-space margin alone.
  A file system full before the end gives `OSError(ENOSPC)`; what was allocated stays allocated (ext4;
    tmpfs gives it back), which is harmless: those blocks belong to the file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path
from typing import Any


def _libc_fallocate() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on
        fn = libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _libc_fallocate() if hasattr(os, "statvfs") else None
BACKEND = "fallocate" if _FALLOCATE is not None else "none"


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still allocate on the file system of `path` (a folder or file)."""
    st = os.statvfs(path)
    return int(st.f_bavail) * int(st.f_frsize)


def allocated_bytes(path: Path) -> int:
    """Bytes the file system has allocated to the file `path` (its blocks, holes excluded)."""
    return int(os.stat(path, follow_symlinks=False).st_blocks) * 512


def preallocate(path: Path) -> bool:
    """Back every block of the regular file `path` up to its size (see the module docstring). True when
    done (or nothing was missing); False when this platform cannot (backend `none`, or a file system
    without `fallocate`: EOPNOTSUPP). Raises `OSError` (ENOSPC when the file system is full). Links and
    anything that is not a regular file are refused with `OSError`."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if _FALLOCATE is None:
            return False
        if _FALLOCATE(fd, 0, 0, st.st_size) != 0:
            err = ctypes.get_errno()
            if err in (errno.EOPNOTSUPP, errno.ENOSYS):
                return False
            raise OSError(err, os.strerror(err), str(path))
        return True
    finally:
        os.close(fd)
