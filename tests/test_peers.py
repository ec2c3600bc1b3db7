"""The owner's socket endpoint and the forwarding client, in one process."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from clarity.coordination import wire
from clarity.coordination.owner_server import OwnerServer, socket_path_for
from clarity.coordination.peer_client import PeerClient
from clarity.errors import CoordinationTimeout, InvalidArgument, NotSent, OwnerGone, OwnerTimeout, ProtocolError


def handler(op: str, args: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
    if op == "echo":
        return {"echo": args}
    if op == "bad":
        raise InvalidArgument("importance: must be at most 1")
    if op == "slow":
        time.sleep(float(args["s"]))
        return {}
    raise RuntimeError("boom")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    coord = tmp_path / "c"
    coord.mkdir(mode=0o700)
    srv = OwnerServer(socket_path_for(coord), handler, max_frame=4096)
    srv.start()
    yield srv
    srv.stop()


def test_round_trip_typed_errors_and_socket_mode(server: OwnerServer) -> None:
    assert os.stat(server.path).st_mode & 0o777 == 0o600
    client = PeerClient(server.path, 4096)
    assert client.request("echo", {"a": [1, "x"]}, time.monotonic() + 5) == {"echo": {"a": [1, "x"]}}
    with pytest.raises(InvalidArgument, match="importance"):
        client.request("bad", {}, time.monotonic() + 5)
    with pytest.raises(Exception, match="RuntimeError: boom"):
        client.request("crash", {}, time.monotonic() + 5)
    assert client.request("echo", {}, time.monotonic() + 5) == {"echo": {}}  # the connection survived


def test_deadlines(server: OwnerServer) -> None:
    client = PeerClient(server.path, 4096)
    with pytest.raises(OwnerTimeout):
        client.request("slow", {"s": 1.0}, time.monotonic() + 0.2)
    with pytest.raises(NotSent):
        client.request("echo", {}, time.monotonic() - 1)  # a request past its deadline is not even sent
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(server.path))
    wire.send_frame(raw, {"id": "x", "op": "echo", "args": {}, "protocol": wire.PROTOCOL, "budget": -1})
    reply = wire.recv_frame(raw, 4096)  # the owner does not run what its caller gave up on
    assert reply["ok"] is False and "deadline passed" in reply["error"]["message"]
    assert reply["error"]["kind"] == CoordinationTimeout.kind
    raw.close()


def test_oversized_frame_is_refused(server: OwnerServer) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(server.path))
    s.sendall(struct.pack("!I", 10_000_000))
    size = struct.unpack("!I", s.recv(4))[0]
    reply = s.recv(size)
    assert b"over the limit" in reply
    assert s.recv(1) == b""  # and the connection is closed
    with pytest.raises(ProtocolError):
        PeerClient(server.path, 4096).request("echo", {"x": "y" * 8000}, time.monotonic() + 5)


def test_no_owner_means_owner_gone(tmp_path: Path) -> None:
    with pytest.raises(OwnerGone):
        PeerClient(tmp_path / "missing.sock", 4096).request("echo", {}, time.monotonic() + 1)


def test_stop_removes_only_its_own_socket(server: OwnerServer) -> None:
    server.path.unlink()
    later = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    later.bind(str(server.path))  # a later owner's socket at the same path
    server.stop()
    assert server.path.exists()
    later.close()


def test_long_paths_use_a_private_temp_folder(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 90) / ".qdrant_coordination"
    path = socket_path_for(deep)
    assert len(os.fsencode(path)) < 104 and path.parent.stat().st_mode & 0o777 == 0o700
    assert path == socket_path_for(deep)  # stable for the same folder
    assert socket_path_for(tmp_path / "c") == (tmp_path / "c").resolve() / "owner.sock"
