"""The C library's heap: give freed pages back to the OS, and cap malloc arenas.

Backend, chosen by capability (`BACKEND`): `glibc` where the C library has `malloc_trim` and
`mallopt`; `none` elsewhere (macOS's allocator returns freed pages by itself), where both calls do
nothing. Neither ever raises.
"""

from __future__ import annotations

import ctypes
from typing import Any

_M_ARENA_MAX = -8


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_lib = _libc()
_trim = getattr(_lib, "malloc_trim", None)
_mallopt = getattr(_lib, "mallopt", None)
BACKEND = "glibc" if _trim is not None and _mallopt is not None else "none"


def release_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc keeps what a large transient allocation used)."""
    if _trim is not None:
        _trim(0)


def limit_arenas(n: int) -> None:
    """At most `n` malloc arenas (glibc makes one per thread that allocates, each keeping its pages)."""
    if _mallopt is not None:
        _mallopt(_M_ARENA_MAX, n)
