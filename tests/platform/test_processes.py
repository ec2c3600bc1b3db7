"""clarity.platform.processes: alive, start time, pid namespace, RSS, with the `proc` and `ps` backends
compared on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clarity.platform import processes
from tests.harness.scripted import Scripted

SLEEPER = "import sys; print('up', flush=True); sys.stdin.readline()"
BIG = "import sys; x = bytearray(96 << 20); x[::4096] = b'1' * len(x[::4096]); print('up', flush=True); " \
      "sys.stdin.readline()"


def _has_proc() -> bool:
    return os.path.exists("/proc/self/stat")


def _has_ps() -> bool:
    return shutil.which("ps", path="/bin:/usr/bin") is not None


@pytest.fixture(params=["proc", "ps"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "proc" and not _has_proc():
        pytest.skip("no /proc on this system")
    if name == "ps" and not _has_ps():
        pytest.skip("no ps in /bin or /usr/bin")
    monkeypatch.setattr(processes, "BACKEND", name)
    return name


class Child(Scripted):
    def __init__(self, script: str = SLEEPER) -> None:
        super().__init__(script, ready="up")


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for c in started:
        c.stop()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_alive_follows_a_process_from_start_to_reaping(children: list[Child]) -> None:
    assert processes.alive(os.getpid())
    c = Child()
    children.append(c)
    assert processes.alive(c.pid)
    c.stop()
    assert not processes.alive(c.pid)
    assert processes.alive(1)  # another user's (or init) answers True, whatever the permission


def test_start_time_is_stable_for_one_process_and_none_when_gone(backend: str, children: list[Child]) -> None:
    c = Child()
    children.append(c)
    first = processes.process_start_time(c.pid)
    assert isinstance(first, int)
    time.sleep(0.05)
    assert processes.process_start_time(c.pid) == first
    mine = processes.process_start_time(os.getpid())
    assert isinstance(mine, int) and mine <= first  # this process started before its child
    c.stop()
    assert processes.process_start_time(c.pid) is None
    assert processes.process_start_time(_dead_pid()) is None


def test_a_later_process_has_another_start_time(backend: str, children: list[Child]) -> None:
    """What the lease record relies on: a pid reused by a later process never matches the recorded start
    time. `ps -o lstart` counts whole seconds, so the later process starts in a later second."""
    early = Child()
    children.append(early)
    t_early = processes.process_start_time(early.pid)
    time.sleep(1.1 if backend == "ps" else 0.1)
    late = Child()
    children.append(late)
    t_late = processes.process_start_time(late.pid)
    assert t_early is not None and t_late is not None
    assert t_late > t_early


def test_both_backends_agree_on_alive_and_roughly_on_rss(children: list[Child],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not (_has_proc() and _has_ps()):
        pytest.skip("needs both /proc and ps")
    small, big = Child(), Child(BIG)
    children += [small, big]
    by_backend: dict[str, tuple[int, int]] = {}
    for name in ("proc", "ps"):
        monkeypatch.setattr(processes, "BACKEND", name)
        assert processes.alive(small.pid) and processes.alive(big.pid)
        s, b = processes.rss_kib(small.pid), processes.rss_kib(big.pid)
        assert s is not None and b is not None, name
        assert b - s > 80 * 1024, f"{name}: a 96 MiB allocation shows as {b - s} KiB"
        by_backend[name] = (s, b)
    (s_proc, b_proc), (s_ps, b_ps) = by_backend["proc"], by_backend["ps"]
    assert abs(b_proc - b_ps) < 0.15 * b_proc, by_backend
    assert abs(s_proc - s_ps) < max(4096, 0.5 * s_proc), by_backend


def test_rss_is_none_for_a_gone_process(backend: str) -> None:
    assert processes.rss_kib(_dead_pid()) is None
    mine = processes.rss_kib(os.getpid())
    assert mine is not None and mine > 1024


def test_the_ps_start_time_parses_the_c_locale_lstart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_ps", lambda pid, field: "Fri Dec  4 18:41:18 2026")
    t = processes._ps_start_time(1)
    assert t == int(time.mktime((2026, 12, 4, 18, 41, 18, 0, 0, -1)))
    monkeypatch.setattr(processes, "_ps", lambda pid, field: "garbage")
    assert processes._ps_start_time(1) is None
    monkeypatch.setattr(processes, "_ps", lambda pid, field: None)
    assert processes._ps_start_time(1) is None


def test_the_ps_helper_answers_none_rather_than_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _has_ps():
        pytest.skip("no ps")
    assert processes._ps(_dead_pid(), "rss") is None
    assert processes._ps(os.getpid(), "pid") == str(os.getpid())

    def broken(*a: object, **k: object) -> None:
        raise OSError(2, "No such file or directory: 'ps'")

    monkeypatch.setattr(subprocess, "run", broken)
    assert processes._ps(os.getpid(), "rss") is None


def test_pid_namespace_is_shared_with_a_child() -> None:
    ns = processes.pid_namespace()
    if not _has_proc():
        assert ns is None
        return
    assert ns is not None and ns.startswith("pid:[") and ns.endswith("]")
    out = subprocess.run([sys.executable, "-c", "from clarity.platform import processes; "
                          "print(processes.pid_namespace())"], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ns


def test_the_backend_is_chosen_by_capability() -> None:
    assert processes.BACKEND == ("proc" if _has_proc() else "ps")
