"""What a user can cause gets one line on stderr naming the path or the fix, never a traceback: the real
CLI as a subprocess, for each friction point.

Read-only folders: the tests run as root here, and `chmod` does not stop root, so a folder is made
read-only with a read-only bind mount (skipped, with the reason, where mounting is not possible).
"""

from __future__ import annotations

import importlib.util
import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import cli, open_sessions, run_async

REPO = Path(__file__).resolve().parent.parent
STORE = Path(".claude") / "alunai-clarity"
ADD = "claude mcp add clarity -- clarity serve"


def project_env() -> dict[str, str]:
    """No home of any kind: the store follows the current directory."""
    drop = ("CLARITY_HOME", "CLAUDE_PROJECT_DIR", "CLARITY_SHARE_WORKTREES")
    return {k: v for k, v in os.environ.items() if k not in drop}


def clarity(*args: str, cwd: Path | None = None, stdin: int | None = subprocess.DEVNULL,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clarity", *args], cwd=cwd, env=project_env(), stdin=stdin,
                          capture_output=True, text=True, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr (AssertionError when there are more, or a traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("clarity: "), lines[0]
    return lines[0]


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """`make(path)`: `path` becomes a read-only bind mount of itself until the test ends."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount (as another user, chmod alone would do)")
    mounted: list[Path] = []

    def make(path: Path) -> None:
        first = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True,
                               timeout=30)
        if first.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {first.stderr.strip()}")
        mounted.append(path)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True, timeout=30)

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True, capture_output=True, timeout=30)


def test_an_unwritable_project_folder(tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    read_only(project)
    store = project / STORE

    bad = clarity("store", "a memory", cwd=project)
    line = one_line(bad)
    assert bad.returncode == 2 and bad.stdout == ""
    assert f"cannot create the store folder {store}" in line and "--home" in line

    served = clarity("serve", cwd=project, stdin=subprocess.DEVNULL)  # a client's pipe, at once at its end
    line = one_line(served)
    assert served.returncode == 2 and served.stdout == "" and str(store) in line

    # reading needs no store: these say so and succeed
    st = clarity("status", cwd=project)
    assert st.returncode == 0 and st.stderr == "" and f"no store yet: it would be at {store}" in st.stdout
    ctx = clarity("context", cwd=project)
    assert ctx.returncode == 0 and ctx.stderr == "" and "No memories stored yet" in ctx.stdout
    js = orjson.loads(clarity("status", "--json", cwd=project).stdout)
    assert js["store_exists"] is False and js["home"] == str(store)
    assert os.listdir(project) == []


def test_a_read_only_store(home: Path, tmp_path: Path, read_only: Callable[[Path], None]) -> None:
    cli(home, "store", "written before the folder went read-only")
    read_only(home)

    st = cli(home, "status", check=False)
    assert st.returncode == 0 and f"home {home}" in st.stdout
    assert "cannot write the log file" in one_line(st) and "logging to stderr only" in st.stderr
    for args in (("list",), ("store", "more"), ("context",), ("search", "written")):
        proc = cli(home, *args, check=False)
        line = one_line(proc)
        assert proc.returncode == 2, args
        assert f"the store {home} cannot be written here" in line and "--home" in line, line


@pytest.mark.parametrize("command", [("store", "x"), ("list",), ("status",), ("context",)])
def test_a_home_that_is_a_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    proc = clarity(*command, "--home", str(afile))
    line = one_line(proc)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"the store folder {afile} is a file, not a folder: give --home" in line
    assert afile.read_text() == "mine"


def test_a_home_that_cannot_be_made(tmp_path: Path) -> None:
    proc = clarity("store", "x", "--home", "/proc/nope")
    line = one_line(proc)
    assert proc.returncode == 2 and "cannot create the store folder /proc/nope" in line and "--home" in line
    st = clarity("status", "--home", "/proc/nope")  # reading: there is none, said in one line
    assert st.returncode == 0 and st.stderr == "" and "no store yet: it would be at /proc/nope" in st.stdout
    assert not Path("/proc/nope").exists()


def test_ctrl_c_during_a_command(home: Path, tmp_path: Path) -> None:
    """Ctrl-C while `restore` waits for a session: exit 130, one line, nothing changed."""
    cli(home, "store", "a memory to keep")
    backup = orjson.loads(cli(home, "backup", "--json").stdout)["file"]

    async def scenario() -> None:
        async with open_sessions(home, 1) as (s,):
            await s.call("store_memory", {"content": "the session owns the store now"})
            owner = (await s.call("coordination_status"))["this_process"]["pid"]
            proc = subprocess.Popen([sys.executable, "-m", "clarity", "restore", backup, "--yes", "--timeout", "60",
                                     "--home", str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            try:
                assert proc.stderr is not None
                ready, _, _ = select.select([proc.stderr], [], [], 60)
                assert ready, "restore said nothing within 60 s"
                waiting = proc.stderr.readline()
                assert f"waiting up to 60 s for pid {owner}" in waiting, waiting
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == 130, err
            assert err == "clarity: interrupted\n" and out == ""
            assert (await s.call("memory_stats"))["total"] == 2  # nothing restored

    run_async(scenario)


def test_serve_in_a_terminal_says_what_it_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "clarity", "serve", "--home", str(home)], stdin=secondary,
                              capture_output=True, text=True, timeout=60, env=project_env())
    finally:
        os.close(primary)
        os.close(secondary)
    line = one_line(proc)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "MCP server" in line and ADD in line
    assert not home.exists()  # nothing made


def test_serve_on_a_pipe_serves(tmp_path: Path) -> None:
    """A client starts it with a pipe: no refusal; it serves until the pipe closes, then exits 0."""
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "clarity", "serve", "--home", str(home)], input="",
                          capture_output=True, text=True, timeout=120, env=project_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "serving on stdio" in proc.stderr and ADD not in proc.stderr and proc.stdout == ""


def test_python_m_clarity_next_to_a_checkout_named_clarity(tmp_path: Path) -> None:
    parent = tmp_path / "src"
    parent.mkdir()
    (parent / "clarity").symlink_to(REPO, target_is_directory=True)  # `git clone ... clarity` lands here
    proc = clarity("--version", cwd=parent)
    assert "Traceback" not in proc.stderr, proc.stderr
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('clarity').origin)"],
                           cwd=parent, capture_output=True, text=True, timeout=60, env=project_env())
    if probe.stdout.strip() == "None":  # the folder hides the package (an editable install): say so
        line = one_line(proc)
        assert proc.returncode == 2 and f"the folder {parent / 'clarity'}" in line
        assert "run it from another folder" in line and "`clarity` command" in line
    else:  # an installed package wins over a folder: it just works
        assert proc.returncode == 0 and proc.stdout.startswith("clarity "), proc.stderr
    assert importlib.util.find_spec("clarity") is not None


def test_a_log_file_that_cannot_be_opened(home: Path, tmp_path: Path) -> None:
    cli(home, "store", "a memory")
    log = home / "logs" / "clarity.log"
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not a log")
    log.unlink()
    log.symlink_to(elsewhere)  # never followed
    proc = cli(home, "list", check=False)
    line = one_line(proc)
    assert proc.returncode == 0 and "a memory" in proc.stdout
    assert f"cannot write the log file {log}" in line and "logging to stderr only" in line
    assert elsewhere.read_text() == "not a log"


def test_a_full_disk_for_the_log(home: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    cli(home, "store", "a memory")
    logs = home / "logs"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(logs)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        fd = os.open(logs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(64):  # 16 KiB fill it: the rest is refused
                os.write(fd, b"\0" * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)
        proc = cli(home, "list", check=False)
    finally:
        subprocess.run(["umount", str(logs)], check=True, capture_output=True, timeout=30)
    line = one_line(proc)
    assert proc.returncode == 0 and "a memory" in proc.stdout
    assert "cannot write the log file" in line and "No space left on device" in line
    assert "Logging error" not in proc.stderr
