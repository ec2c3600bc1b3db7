"""clarity.platform.children: run_child (deadline, cancel, capture, always reaped) and die_with_parent
with both backends (`pdeathsig`, `watchdog`)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clarity.platform import children
from clarity.platform.children import ChildCancelled, ChildTimeout, run_child

pytestmark = pytest.mark.timeout(120)
PY = sys.executable


def _state(pid: int) -> str | None:
    """The process's state letter (Z for a zombie), None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return raw.rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return out.stdout.strip()[:1] or None


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (a grandchild re-parented to an init
    that does not reap is still dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return _state(pid) in (None, "Z", "X")


def _wait_file(path: Path, timeout: float = 30) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and (text := path.read_text()).endswith("\n"):
            return text.strip()
        time.sleep(0.01)
    raise AssertionError(f"{path} was not written within {timeout} s")


def _pid_writer(pidfile: Path, then: str) -> list[str]:
    return [PY, "-c", f"import os, sys, time; open(sys.argv[1], 'w').write(f'{{os.getpid()}}\\n'); {then}",
            str(pidfile)]


# ---- run_child -------------------------------------------------------------------------------

def test_the_result_carries_exit_status_stdout_pid_and_time() -> None:
    done = run_child([PY, "-c", "import os; print('hello', os.getpid()); raise SystemExit(7)"], 60,
                     capture_stdout=True)
    assert done.returncode == 7
    assert done.stdout.decode().split() == ["hello", str(done.pid)]
    assert _gone(done.pid) and not os.path.exists(f"/proc/{done.pid}")
    assert 0 < done.seconds < 60


def test_stdout_is_captured_across_polls_and_in_full() -> None:
    script = ("import sys, time\nsys.stdout.write('a' * 3_000_000); sys.stdout.flush()\n"
              "time.sleep(3 * float(sys.argv[1]))\nprint('end')")
    done = run_child([PY, "-c", script, str(children.POLL_S)], 60, capture_stdout=True)
    assert done.returncode == 0
    assert done.stdout == b"a" * 3_000_000 + b"end\n"


def test_stdout_is_discarded_unless_asked_and_stdin_is_closed() -> None:
    done = run_child([PY, "-c", "print('x' * 1000)"], 60)
    assert done.returncode == 0 and done.stdout == b""
    done = run_child([PY, "-c", "import sys; print(len(sys.stdin.read()))"], 60, capture_stdout=True)
    assert done.stdout.strip() == b"0"  # end of input at once: the child never waits on our stdin


def test_a_child_past_its_deadline_is_killed_and_reaped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(ChildTimeout, match="deadline") as e:
        run_child(_pid_writer(pidfile, "time.sleep(600)"), 1.0)
    took = time.monotonic() - t0
    pid = int(_wait_file(pidfile))
    assert f"pid {pid}" in e.value.message
    assert 1.0 <= took < 10, took
    assert _gone(pid) and _state(pid) is None  # killed and reaped: not even a zombie is left


def test_a_child_that_ignores_sigterm_is_still_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    then = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    with pytest.raises(ChildTimeout):
        run_child(_pid_writer(pidfile, then), 0.5)
    assert _state(int(_wait_file(pidfile))) is None


def test_cancel_kills_and_reaps_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(ChildCancelled, match="cancelled"):
            run_child(_pid_writer(pidfile, "time.sleep(600)"), 600, cancel=cancel)
    finally:
        timer.cancel()
    took = time.monotonic() - t0
    assert 0.5 <= took < 0.5 + children.POLL_S + 5, took
    assert _state(int(_wait_file(pidfile))) is None


def test_a_cancel_set_before_the_start_still_reaps(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ChildCancelled):
        run_child(_pid_writer(pidfile, "time.sleep(600)"), 600, cancel=cancel)
    try:
        pid = int(_wait_file(pidfile, timeout=2))
    except AssertionError:
        return  # killed before it could write its pid: nothing left to check
    assert _state(pid) is None


def test_an_exception_in_the_parent_kills_and_reaps_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    class Exploding(threading.Event):
        def is_set(self) -> bool:
            if pidfile.exists():
                raise RuntimeError("the parent failed while the child ran")
            return False

    with pytest.raises(RuntimeError, match="parent failed"):
        run_child(_pid_writer(pidfile, "time.sleep(600)"), 600, cancel=Exploding())
    assert _state(int(_wait_file(pidfile))) is None


# ---- die_with_parent -------------------------------------------------------------------------

GRANDCHILD = r"""
import os, sys, time
from clarity.platform.children import die_with_parent
die_with_parent(int(sys.argv[1]), backend=sys.argv[2])
print("armed", os.getpid(), flush=True)
time.sleep(600)
"""
PARENT = r"""
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]])
time.sleep(600)
"""


@pytest.fixture(params=["pdeathsig", "watchdog"])
def death_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "pdeathsig" and children._prctl is None:
        pytest.skip("the C library has no prctl")
    return name


def _read_line(stream: int, timeout: float) -> bytes:
    """One line from a raw pipe, waiting at most `timeout` (b"" at end of file)."""
    buf = b""
    end = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            raise AssertionError(f"no line within {timeout} s (so far {buf!r})")
        chunk = os.read(stream, 1)
        if not chunk:
            return buf
        buf += chunk
    return buf


def _eof_within(stream: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([stream], [], [], max(0.0, end - time.monotonic()))
        if ready and not os.read(stream, 4096):
            return True
    return False


def test_a_grandchild_dies_when_its_parent_is_killed(death_backend: str) -> None:
    """The parent starts a child that arms die_with_parent, then the parent is SIGKILLed (no chance to
    clean up): the child must be gone within a few seconds, at once with pdeathsig."""
    parent = subprocess.Popen([PY, "-c", PARENT, GRANDCHILD, death_backend], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    out = parent.stdout.fileno()
    grandchild = None
    try:
        line = _read_line(out, 60).split()
        assert line[0] == b"armed", line
        grandchild = int(line[1])
        time.sleep(2 * children.WATCHDOG_S + 0.2)  # the watchdog leaves a child alone while its parent lives
        assert not _gone(grandchild), "die_with_parent killed a child whose parent still runs"
        t0 = time.monotonic()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        limit = 5.0
        while not _gone(grandchild) and time.monotonic() - t0 < limit:
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert _gone(grandchild), f"the {death_backend} child outlived its parent by more than {limit} s"
        if death_backend == "watchdog":
            assert took < children.WATCHDOG_S + 3
        assert _eof_within(out, 5)  # nobody is left holding the pipe
    finally:
        if grandchild is not None and not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.wait()
        parent.stdout.close()


def test_a_child_whose_parent_is_already_gone_exits_at_once_with_status_3(death_backend: str) -> None:
    """Told a parent pid that is not its parent (the real one died before it armed): exit 3."""
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    out = subprocess.run([PY, "-c", GRANDCHILD, str(dead.pid), death_backend], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 3, (out.returncode, out.stderr)
    assert "armed" not in out.stdout


def test_a_child_whose_parent_lives_runs_to_its_end(death_backend: str) -> None:
    script = ("import os, sys, time\nfrom clarity.platform.children import die_with_parent\n"
              "die_with_parent(os.getppid(), backend=sys.argv[1])\n"
              "time.sleep(3 * float(sys.argv[2]))\nprint('finished')")
    done = run_child([PY, "-c", script, death_backend, str(children.WATCHDOG_S)], 60, capture_stdout=True)
    assert done.returncode == 0 and done.stdout == b"finished\n"


def test_the_backend_is_chosen_by_capability() -> None:
    assert children.BACKEND == ("pdeathsig" if children._prctl is not None else "watchdog")
    if sys.platform.startswith("linux"):
        assert children.BACKEND == "pdeathsig"
    assert re.fullmatch(r"pdeathsig|watchdog", children.BACKEND)
