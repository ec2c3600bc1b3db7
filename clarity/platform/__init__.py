"""Every operating-system-specific call of Clarity, and nothing else. Nothing outside this package calls
`fcntl`, `prctl`, `posix_fadvise`, `malloc_trim` or `mallopt`, or reads `/proc` (tests/test_layers.py
checks it).

One mechanism per module, each backend chosen by capability (what the interpreter and the kernel
offer), never by platform name, the way filelock picks its backends:

- `files`: private folders, no-follow opens, atomic publish (temp file, sync, rename, sync folder),
  durable sync (`F_FULLFSYNC` where it exists: macOS's plain fsync does not reach the disk).
- `locks`: whole-file locks held through one open file: Linux open-file-description locks where
  `fcntl` has `F_OFD_*`, `flock` elsewhere (macOS, the BSDs). Both belong to the open file, not the
  process, so a probe never drops a lock its own process holds.
- `peers`: who is at the other end of a Unix socket: `SO_PEERCRED` (Linux), `LOCAL_PEERCRED` (macOS,
  FreeBSD).
- `processes`: facts about a process (alive, start time, pid namespace, RSS): `/proc` where it exists,
  `ps` elsewhere.
- `children`: a child process with a deadline that dies with its parent (`PR_SET_PDEATHSIG` where
  `prctl` exists, a watchdog thread elsewhere).
- `memory`: giving freed heap back to the OS and capping malloc arenas (glibc; no-ops elsewhere).
- `pagecache`: keeping a folder's files in the page cache (`posix_fadvise(WILLNEED)`; a no-op where
  it is missing).
- `disk`: free space of a folder's file system (`statvfs`) and backing a sparse file's pages before a
  memory map writes them (`fallocate(2)` where the C library has it, nothing elsewhere).

`require_posix()` is the one platform check by name: Windows (CPython has no AF_UNIX there) gets a
one-line error that says to use WSL 2.
"""

from __future__ import annotations

import os
import sys

from clarity.errors import UnsupportedPlatform

POSIX = os.name == "posix"


def require_posix() -> None:
    """Raise UnsupportedPlatform with a one-line fix on Windows (no AF_UNIX sockets, no fcntl)."""
    if not POSIX:
        raise UnsupportedPlatform(
            f"Clarity runs on Linux and macOS; this is {sys.platform}. On Windows, run it inside WSL 2."
        )


def backends() -> dict[str, str]:
    """Which backend each mechanism uses in this process (for `clarity status` and the tests)."""
    from clarity.platform import children, disk, locks, memory, pagecache, peers, processes

    return {"locks": locks.BACKEND, "peers": peers.BACKEND, "processes": processes.BACKEND,
            "children": children.BACKEND, "memory": memory.BACKEND, "pagecache": pagecache.BACKEND,
            "disk": disk.BACKEND}
