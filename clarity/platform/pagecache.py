"""Keeping files in the page cache: the hot standby asks the kernel to read the store's files ahead, so
the next owner opens them from memory.

Backend, chosen by capability (`BACKEND`): `fadvise` where `os.posix_fadvise` exists (Linux, the
BSDs): `POSIX_FADV_WILLNEED` on every regular file (the kernel reads them in the background; about 5
ms of CPU per pass at 100k memories). `none` elsewhere (macOS): nothing is done, and a failover reads
what the OS no longer caches from disk. Never raises; links and anything not a regular file are
skipped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

BACKEND = "fadvise" if hasattr(os, "posix_fadvise") else "none"


def will_need_tree(root: Path) -> int:
    """Ask the kernel to cache every regular file under `root`; returns how many were asked for."""
    if BACKEND != "fadvise":
        return 0
    n = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                    n += 1
            except OSError:
                pass
            finally:
                os.close(fd)
    return n


def read_tree(root: Path) -> None:
    """Read every regular file under `root` once (portable: it works wherever reading does), so a
    process that opens them next finds them cached. Links and anything not a regular file are skipped."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    while os.read(fd, 4 << 20):
                        pass
            finally:
                os.close(fd)
