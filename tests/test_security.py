"""A hostile neighbour (issue 7 §2): another local user, planted links and loose modes.

The tests that need a second user create a real one (`useradd`) and act as it with `runuser`; they
need root, and skip with that reason otherwise. The second user runs the system's /usr/bin/python3
(standard library only: it needs nothing of Clarity)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarity.config import load_settings
from clarity.coordination import tickets
from clarity.coordination.lease import Lease
from clarity.coordination.peer_client import PeerClient
from clarity.errors import UnsafeStore
from tests.conftest import cli

ATTACKER_PY = "/usr/bin/python3"
FAKE_OWNER = r"""
import fcntl, json, os, socket, struct, sys, time
coord, sock_path, log_path = sys.argv[1:4]
os.makedirs(coord, exist_ok=True)
os.chmod(coord, 0o777)
fd = os.open(os.path.join(coord, "lease.lock"), os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what Clarity's flock backend (macOS, forced in CI) sees
if hasattr(fcntl, "F_OFD_SETLK"):  # and what its OFD backend (Linux) sees: the two kinds never conflict
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
with open(os.path.join(coord, "lease.json"), "w") as f:
    json.dump({"pid": os.getpid(), "socket": sock_path, "epoch": 99, "heartbeat_at": time.time()}, f)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock_path)
os.chmod(sock_path, 0o777)
s.listen(16)
s.settimeout(0.1)
log = open(log_path, "ab", buffering=0)
print("ready", flush=True)
conns = []
while True:
    try:
        c, _ = s.accept()
        c.setblocking(False)
        conns.append(c)
    except OSError:
        pass
    for c in conns:
        try:
            data = c.recv(65536)
            if data:
                log.write(data)
        except BlockingIOError:
            pass
"""


def _can_add_users() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a second local user"
    if not (shutil.which("useradd") and shutil.which("runuser") and os.path.exists(ATTACKER_PY)):
        return "needs useradd, runuser and /usr/bin/python3"
    return None


@pytest.fixture(scope="module")
def neighbour() -> Iterator[str]:
    reason = _can_add_users()
    if reason:
        pytest.skip(reason)
    name = f"clarity-n{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def shared_base() -> Iterator[Path]:
    """A folder both users can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="clarity-sec-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _as(user: str, *cmd: str) -> subprocess.Popen[str]:
    """`cmd` as `user`, in a new process group of its own (so `_stop` ends runuser and its child)."""
    return subprocess.Popen(["runuser", "-u", user, "--", *cmd], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def _stop(p: subprocess.Popen[str]) -> None:
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def _fake_owner(user: str, coord: Path, sock: Path, log: Path) -> subprocess.Popen[str]:
    log.touch()
    os.chmod(log, 0o666)
    p = _as(user, ATTACKER_PY, "-c", FAKE_OWNER, str(coord), str(sock), str(log))
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_a_planted_coordination_folder_and_socket_get_nothing(neighbour: str, shared_base: Path) -> None:
    """The reproduction of issue 7 §2: another user pre-creates the coordination folder (in a parent
    made writable for the test), holds lease.lock and listens on owner.sock. `clarity store` used to
    send the secret there and exit 0."""
    home = shared_base / "home"
    (home / "qdrant").mkdir(parents=True)
    os.chmod(home, 0o755)
    os.chmod(home / "qdrant", 0o777)  # the parent made writable for the test
    coord = home / "qdrant" / ".qdrant_coordination"
    log = shared_base / "received.bin"
    attacker = _fake_owner(neighbour, coord, coord / "owner.sock", log)
    try:
        out = cli(home, "store", "the deploy key is hunter2 (secret)", check=False)
        time.sleep(0.5)
        assert log.read_bytes() == b""  # nothing was sent
        assert out.returncode != 0
        assert "refusing to use" in out.stderr and "Fix:" in out.stderr and "mode" in out.stderr
    finally:
        _stop(attacker)


def test_the_forwarding_client_checks_the_owners_uid_before_sending(neighbour: str, shared_base: Path) -> None:
    coord = shared_base / "coord"
    coord.mkdir()
    shutil.chown(coord, user=neighbour)
    log = shared_base / "received.bin"
    attacker = _fake_owner(neighbour, coord, coord / "owner.sock", log)
    sock = coord / "owner.sock"
    try:
        with pytest.raises(UnsafeStore, match=f"served by uid \\d+ \\({neighbour}\\)"):
            PeerClient(sock, 1 << 20).request("store", {"content": "secret"}, time.monotonic() + 5)
        time.sleep(0.3)
        assert log.read_bytes() == b""
    finally:
        _stop(attacker)


def test_a_foreign_socket_fallback_folder_is_an_error_naming_it(neighbour: str, shared_base: Path,
                                                                tmp_path: Path) -> None:
    folder = shared_base / f"clarity-{os.getuid()}"
    folder.mkdir(mode=0o700)
    shutil.chown(folder, user=neighbour)
    home = tmp_path / ("x" * 80) / "home"
    out = cli(home, "store", "x", check=False, env={"TMPDIR": str(shared_base), "XDG_RUNTIME_DIR": ""})
    assert out.returncode != 0 and str(folder) in out.stderr and neighbour in out.stderr


def test_a_loose_socket_fallback_folder_is_an_error_and_xdg_runtime_dir_is_used(tmp_path: Path) -> None:
    """Regression: a pre-created fallback folder was silently chmodded and used."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    loose = tmp / f"clarity-{os.getuid()}"
    loose.mkdir()
    os.chmod(loose, 0o777)
    home = tmp_path / ("x" * 80) / "home"
    out = cli(home, "store", "x", check=False, env={"TMPDIR": str(tmp), "XDG_RUNTIME_DIR": ""})
    assert out.returncode != 0 and str(loose) in out.stderr and "0777" in out.stderr
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    out = cli(home, "store", "x", check=False, env={"TMPDIR": str(tmp), "XDG_RUNTIME_DIR": str(xdg)})
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE((xdg / "clarity").stat().st_mode) == 0o700


def test_a_waiters_symlink_is_refused_and_nothing_is_deleted_where_it_points(home: Path, tmp_path: Path) -> None:
    """Regression: stale-ticket cleanup followed a `waiters` symlink and deleted another folder's files."""
    waiters = load_settings(home).coordination_dir / "waiters"
    private = tmp_path / "private"
    private.mkdir()
    (private / "00000000000000000001-1-precious.json").write_text("keep me")
    waiters.rmdir()
    waiters.symlink_to(private)
    out = cli(home, "doctor", check=False)
    assert out.returncode != 0 and "symlink" in out.stderr and str(waiters) in out.stderr
    with pytest.raises(UnsafeStore):
        tickets.cleanup_stale(waiters)
    assert (private / "00000000000000000001-1-precious.json").read_text() == "keep me"


def test_odd_entries_in_waiters_are_skipped_never_followed_nor_removed(home: Path, tmp_path: Path) -> None:
    """Regression: a FIFO in waiters/ hung every status (the probe opened it); links were followed."""
    waiters = load_settings(home).coordination_dir / "waiters"
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    os.mkfifo(waiters / "00000000000000000001-1-fifo.json")
    (waiters / "00000000000000000002-1-link.json").symlink_to(secret)
    (waiters / "00000000000000000003-1-dir.json").mkdir()
    out = cli(home, "status", "--json", timeout=60)
    assert '"waiters": []' in out.stdout
    assert tickets.cleanup_stale(waiters) == []
    assert sorted(p.name for p in waiters.iterdir()) == ["00000000000000000001-1-fifo.json",
                                                         "00000000000000000002-1-link.json",
                                                         "00000000000000000003-1-dir.json"]
    assert secret.read_text() == "{}"


def test_an_epoch_symlink_never_clobbers_its_target(home: Path, tmp_path: Path) -> None:
    coord = load_settings(home).coordination_dir
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    (coord / "epoch").symlink_to(target)
    lease = Lease(coord)
    assert lease.try_acquire(None, "forward")
    lease.release()
    assert target.read_text() == "precious"
    assert not (coord / "epoch").is_symlink() and (coord / "epoch").read_text() == "1"


@pytest.mark.parametrize("sub", ["", "qdrant", "logs"])
def test_loose_or_linked_store_folders_are_refused_with_the_fix(home: Path, tmp_path: Path, sub: str) -> None:
    load_settings(home)
    folder = home / sub
    if sub == "logs":
        shutil.rmtree(folder)
        (tmp_path / "elsewhere").mkdir()
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        os.chmod(folder, 0o775)
    out = cli(home, "status", check=False)
    assert out.returncode != 0 and str(folder) in out.stderr and "Fix:" in out.stderr
    assert ("symlink" in out.stderr) if sub == "logs" else ("0775" in out.stderr and "uid" in out.stderr)


def test_with_umask_022_the_store_the_log_and_exports_stay_private(home: Path, tmp_path: Path) -> None:
    """Regression: with umask 022 the store, the log and exports were world-readable."""
    def run(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "clarity", *args, "--home", str(home)], check=True,
                       capture_output=True, timeout=300, preexec_fn=lambda: os.umask(0o022))

    run("store", "a private memory")
    export = tmp_path / "export.json"
    run("export", str(export))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "logs" / "clarity.log").stat().st_mode) == 0o600
    loose = [(str(p), oct(stat.S_IMODE(p.lstat().st_mode))) for p in (home / "qdrant").rglob("*")
             if p.lstat().st_mode & 0o077]
    assert loose == []
