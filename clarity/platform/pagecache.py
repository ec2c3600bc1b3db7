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
from pathlib import Path

from clarity.platform.files import regular_files

BACKEND = "fadvise" if hasattr(os, "posix_fadvise") else "none"


def will_need_tree(root: Path) -> int:
    """Ask the kernel to cache every regular file under `root`; returns how many were asked for."""
    if BACKEND != "fadvise":
        return 0
    n = 0
    for fd in regular_files(root):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            n += 1
        except OSError:
            pass
    return n


def read_tree(root: Path) -> None:
    """Read every regular file under `root` once (portable: it works wherever reading does), so a
    process that opens them next finds them cached. Links and anything not a regular file are skipped."""
    for fd in regular_files(root):
        while os.read(fd, 4 << 20):
            pass
