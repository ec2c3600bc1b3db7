"""clarity.platform.peers: who is at the other end of a Unix socket, asked of the kernel."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity.errors import UnsupportedPlatform
from clarity.platform import peers

FOREIGN_UID = 65534
SYSTEM_PY = "/usr/bin/python3"  # standard library only: runs as any user
CONNECT = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
print("connected", flush=True)
sys.stdin.readline()
"""
LISTEN = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
sys.stdin.readline()
"""


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short folder for socket paths (pytest's tmp_path can pass the 104-byte limit)."""
    folder = Path(tempfile.mkdtemp(prefix="clp-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _native() -> None:
    if peers.BACKEND == "none":
        pytest.skip("this system has neither SO_PEERCRED nor LOCAL_PEERCRED")


def test_a_socketpair_names_this_process_and_this_user() -> None:
    _native()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid, uid = peers.peer_credentials(a)
        assert uid == os.getuid()
        assert pid in (os.getpid(), None)  # None only where the system cannot tell (no LOCAL_PEERPID)
        if peers.BACKEND == "so_peercred":
            assert pid == os.getpid()
        assert peers.peer_credentials(b) == (pid, uid)
    finally:
        a.close()
        b.close()


def _start(script: str, path: Path, python: str = sys.executable, **kw: Any) -> subprocess.Popen[str]:
    p = subprocess.Popen([python, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, **kw)
    assert p.stdout is not None
    return p


def _finish(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
    for stream in (p.stdin, p.stdout):
        if stream is not None:
            stream.close()


def test_the_accepting_side_sees_the_connecting_process(short_dir: Path) -> None:
    _native()
    path = short_dir / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    client = _start(CONNECT, path)
    try:
        conn, _ = server.accept()
        assert client.stdout is not None and client.stdout.readline().strip() == "connected"
        pid, uid = peers.peer_credentials(conn)
        assert uid == os.getuid() and pid in (client.pid, None)
        if peers.BACKEND == "so_peercred":
            assert pid == client.pid
        _finish(client)
        assert peers.peer_credentials(conn) == (pid, uid)  # the kernel's record outlives the peer
        conn.close()
    finally:
        _finish(client)
        server.close()


def test_the_connecting_side_sees_the_listening_process(short_dir: Path) -> None:
    _native()
    path = short_dir / "s.sock"
    listener = _start(LISTEN, path)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        pid, uid = peers.peer_credentials(s)
        assert uid == os.getuid() and pid in (listener.pid, None)
        if peers.BACKEND == "so_peercred":
            assert pid == listener.pid
        s.close()
    finally:
        _finish(listener)


def test_a_peer_of_another_user_is_named_by_its_uid(short_dir: Path) -> None:
    _native()
    if os.geteuid() != 0:
        pytest.skip("needs root to run a peer as another user")
    if not os.path.exists(SYSTEM_PY):
        pytest.skip(f"needs {SYSTEM_PY} (the other user cannot run this virtualenv's interpreter)")
    os.chmod(short_dir, 0o755)
    path = short_dir / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)
    server.listen(1)
    client = _start(CONNECT, path, SYSTEM_PY, user=FOREIGN_UID, group=FOREIGN_UID, extra_groups=[], cwd="/")
    try:
        conn, _ = server.accept()
        pid, uid = peers.peer_credentials(conn)
        assert uid == FOREIGN_UID
        if peers.BACKEND == "so_peercred":
            assert pid == client.pid
        conn.close()
    finally:
        _finish(client)
        server.close()


def _xucred(version: int, uid: int, groups: list[int]) -> bytes:
    raw = struct.pack("=IiH", version, uid, len(groups)) + b"\0\0" + struct.pack(f"={len(groups)}I", *groups)
    return raw.ljust(76, b"\0")  # sizeof(struct xucred) on macOS


def test_parse_xucred_reads_the_uid_of_version_0() -> None:
    assert peers.parse_xucred(_xucred(0, 501, [20, 12, 61])) == 501
    assert peers.parse_xucred(_xucred(0, 0, [0])) == 0
    assert peers.parse_xucred(struct.pack("=IiH", 0, 1234, 0)) == 1234  # exactly the fixed part


def test_parse_xucred_refuses_short_and_unknown_versions() -> None:
    with pytest.raises(OSError, match="returned 9 bytes"):
        peers.parse_xucred(struct.pack("=IiH", 0, 501, 0)[:9])
    with pytest.raises(OSError, match="returned 0 bytes"):
        peers.parse_xucred(b"")
    with pytest.raises(OSError, match="version 1"):
        peers.parse_xucred(_xucred(1, 501, []))


class _FakeSock:
    """getsockopt answers as macOS would for (SOL_LOCAL, LOCAL_PEERCRED / LOCAL_PEERPID)."""

    def __init__(self, cred: bytes, pid: int | None) -> None:
        self.cred, self.pid = cred, pid
        self.asked: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, opt: int, size: int) -> bytes:
        self.asked.append((level, opt, size))
        if opt == 1:
            return self.cred
        if self.pid is None:
            raise OSError(42, "Protocol not available")
        return struct.pack("i", self.pid)


def test_the_local_peercred_backend_with_and_without_a_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "BACKEND", "local_peercred")
    monkeypatch.setattr(peers, "_LOCAL_PEERCRED", 1)
    monkeypatch.setattr(peers, "_LOCAL_PEERPID", 2)
    sock = _FakeSock(_xucred(0, 501, [20]), 4242)
    assert peers.peer_credentials(sock) == (4242, 501)  # type: ignore[arg-type]
    assert sock.asked == [(0, 1, 76), (0, 2, 4)]
    assert peers.peer_credentials(_FakeSock(_xucred(0, 501, []), None)) == (None, 501)  # type: ignore[arg-type]
    monkeypatch.setattr(peers, "_LOCAL_PEERPID", None)  # FreeBSD: no way to ask for the pid
    sock = _FakeSock(_xucred(0, 77, []), 4242)
    assert peers.peer_credentials(sock) == (None, 77)  # type: ignore[arg-type]
    assert [a[1] for a in sock.asked] == [1]
    with pytest.raises(OSError, match="version"):
        peers.peer_credentials(_FakeSock(_xucred(3, 501, []), 1))  # type: ignore[arg-type]


def test_no_backend_refuses_rather_than_trusting_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "BACKEND", "none")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with pytest.raises(UnsupportedPlatform, match="cannot tell who is at the other end"):
            peers.peer_credentials(a)
    finally:
        a.close()
        b.close()


def test_the_backend_matches_what_the_socket_module_offers() -> None:
    if hasattr(socket, "SO_PEERCRED"):
        assert peers.BACKEND == "so_peercred"
    elif hasattr(socket, "LOCAL_PEERCRED"):
        assert peers.BACKEND == "local_peercred"
    else:
        assert peers.BACKEND == "none"
    if sys.platform.startswith("linux"):
        assert peers.BACKEND == "so_peercred"
