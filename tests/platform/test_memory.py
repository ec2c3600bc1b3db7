"""clarity.platform.memory: freed heap pages go back to the OS, malloc arenas can be capped, and neither
call ever raises (no-ops where the C library lacks them)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from clarity.platform import memory

TRIM = r"""
import os, sys
from clarity.platform import memory, processes
blocks = [bytes(2000) for _ in range(100_000)]  # ~200 MB through malloc (pymalloc serves only <= 512 B)
pin = bytes(2000)  # allocated last: the top of the heap stays in use, so free() alone cannot shrink it
del blocks
before = processes.rss_kib(os.getpid())
if sys.argv[1] == "trim":
    memory.release_free_memory()
print(before, processes.rss_kib(os.getpid()))
"""
ARENAS = r"""
import ctypes, sys, threading
from clarity.platform import memory
if sys.argv[1] != "-":
    memory.limit_arenas(int(sys.argv[1]))
barrier = threading.Barrier(4)
def work():
    barrier.wait()
    kept = [bytes(3000) for _ in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def _glibc() -> None:
    if memory.BACKEND != "glibc":
        pytest.skip("the C library has no malloc_trim/mallopt (not glibc)")


def _run(script: str, arg: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, check=True, timeout=120)


def test_release_free_memory_gives_freed_heap_back() -> None:
    _glibc()
    before, after = map(int, _run(TRIM, "trim").stdout.split())
    assert before > 150 * 1024, f"the freed heap should still be resident before the trim ({before} KiB)"
    assert after < before - 100 * 1024, f"resident memory went from {before} to only {after} KiB"
    before_control, after_control = map(int, _run(TRIM, "none").stdout.split())
    assert after_control > before_control - 50 * 1024  # without the call the pages stay: the trim did it


def test_limit_arenas_caps_the_arenas_of_new_threads() -> None:
    _glibc()
    capped = _run(ARENAS, "1").stderr.count("Arena ")
    free = _run(ARENAS, "-").stderr.count("Arena ")
    assert capped == 1
    assert free > 1, "four allocating threads should get arenas of their own without the cap"


def test_the_backend_matches_the_c_library() -> None:
    try:
        lib = ctypes.CDLL(None)
    except OSError:
        lib = None
    has = lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt")
    assert memory.BACKEND == ("glibc" if has else "none")


def test_without_the_c_functions_both_calls_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_trim", None)
    monkeypatch.setattr(memory, "_mallopt", None)
    memory.release_free_memory()
    memory.limit_arenas(2)


def test_the_calls_never_raise() -> None:
    for _ in range(3):
        memory.release_free_memory()
    out = _run("from clarity.platform import memory\nimport sys\nfor n in (1, 0, -1, 1 << 20): "
               "memory.limit_arenas(n)\nprint('ok')", "-")
    assert out.stdout.strip() == "ok"  # odd values are the C library's business, never an exception
