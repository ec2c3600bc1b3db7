"""Small operating-system helpers shared by the engines, the model and the coordination files.

- `fsync_dir`: make a rename or a new entry in a folder durable (fsync of the folder itself).
- `die_with_parent`: a child process (index build, migration copy) is SIGKILLed when its parent dies
  (Linux `PR_SET_PDEATHSIG`); if the parent is already gone, the child exits at once with status 3.
  Elsewhere only the second check applies.
- `release_free_memory`: give freed heap pages back to the OS (glibc `malloc_trim`); a no-op where the
  C library has none. glibc otherwise keeps what a large transient allocation used in the RSS.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(3)


def release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
