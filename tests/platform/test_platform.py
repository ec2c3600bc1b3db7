"""clarity.platform: the one platform check by name (`require_posix`) and the backends report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import clarity.platform as platform
from clarity.platform import children, disk, locks, memory, pagecache, peers, processes

ALLOWED = {
    "locks": {"ofd", "flock"},
    "peers": {"so_peercred", "local_peercred", "none"},
    "processes": {"proc", "ps"},
    "children": {"pdeathsig", "watchdog"},
    "memory": {"glibc", "none"},
    "pagecache": {"fadvise", "none"},
    "disk": {"fallocate", "none"},
}


def test_require_posix_passes_here() -> None:
    assert os.name == "posix"
    platform.require_posix()


WINDOWS = r"""
import os, sys
os.name, sys.platform = "nt", "win32"  # before clarity.platform is imported: it may decide at import time
from clarity.errors import ConfigError, UnsupportedPlatform
from clarity.platform import require_posix
try:
    require_posix()
except UnsupportedPlatform as e:
    print("config" if isinstance(e, ConfigError) else "other", e.message)
else:
    print("no error")
"""


def test_require_posix_refuses_windows_with_a_one_line_fix() -> None:
    out = subprocess.run([sys.executable, "-c", WINDOWS], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1, out.stdout  # one line
    kind, message = out.stdout.strip().split(" ", 1)
    assert kind == "config"  # the CLI reports it like any configuration error
    assert "win32" in message and "WSL 2" in message


def test_backends_names_every_mechanism_and_its_module_choice() -> None:
    report = platform.backends()
    assert set(report) == set(ALLOWED)
    for mechanism, backend in report.items():
        assert backend in ALLOWED[mechanism], (mechanism, backend)
    assert report == {"locks": locks.BACKEND, "peers": peers.BACKEND, "processes": processes.BACKEND,
                      "children": children.BACKEND, "memory": memory.BACKEND, "pagecache": pagecache.BACKEND,
                      "disk": disk.BACKEND}


def test_backends_reports_what_is_in_use_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "BACKEND", "flock")
    monkeypatch.setattr(pagecache, "BACKEND", "none")
    report = platform.backends()
    assert report["locks"] == "flock" and report["pagecache"] == "none"


def test_the_backends_of_this_run() -> None:
    """Linux picks the native backend of every mechanism; a run told which lock backend to expect (the
    second CI pass, tests/harness/bsd_python) gets that one."""
    report = platform.backends()
    expected = os.environ.get("EXPECT_LOCK_BACKEND")
    if expected:
        assert report["locks"] == expected
    if not sys.platform.startswith("linux"):
        return
    assert report["peers"] == "so_peercred" and report["processes"] == "proc"
    assert report["children"] == "pdeathsig"
    if not expected:
        assert report["locks"] == "ofd"
    if hasattr(os, "posix_fadvise"):
        assert report["pagecache"] == "fadvise"
