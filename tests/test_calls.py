"""Calls, deadlines and replies (issue 7 §4), in one process against a real owner and its socket."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity.config import load_settings
from clarity.coordination import wire
from clarity.coordination.coordinator import Coordinator
from clarity.coordination.owner_server import OwnerServer
from clarity.coordination.peer_client import PeerClient
from clarity.errors import (
    ClarityError,
    CoordinationTimeout,
    NotFound,
    NotSent,
    OwnerTimeout,
    ProtocolError,
    ReplyTooLarge,
)
from tests.harness.sockets import full_backlog

HOLD_TICKET = """
import sys, time
from pathlib import Path
from clarity.coordination import tickets
t = tickets.add(Path(sys.argv[1])); print("queued", flush=True); time.sleep(600)
"""


@pytest.fixture
def owner(home: Path) -> Iterator[Coordinator]:
    settings = load_settings(home)
    settings.coordination.handoff_quantum_s = 0
    c = Coordinator(settings)
    c.call("stats", {})  # takes the lease, opens the engine
    assert c.lease.held and c.socket_path is not None
    yield c
    c.close()


def _store_args(content: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "content": content}


def test_a_call_whose_caller_gave_up_while_it_waited_for_the_owner_is_never_applied(owner: Coordinator) -> None:
    """Regression (ghost writes): the owner checked the deadline before waiting for its operation
    lock, so a call its caller had reported as failed was applied afterwards."""
    assert owner.socket_path is not None
    args = _store_args("a ghost: its caller gave up before the owner was free")
    owner.own.op_lock.acquire()  # the owner is busy with a long operation
    try:
        with pytest.raises((OwnerTimeout, CoordinationTimeout)):  # unknown outcome, or "nothing was applied"
            PeerClient(owner.socket_path, 1 << 20).request("store", args, time.monotonic() + 0.5)
        time.sleep(0.3)
    finally:
        owner.own.op_lock.release()
    time.sleep(1.0)  # the queued request would run now
    with pytest.raises(NotFound):
        owner.call("get", {"memory_id": args["id"]})


def test_a_step_down_sends_the_reply_of_an_operation_that_ran(owner: Coordinator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (lost replies): a handoff right after a forwarded operation closed its connection
    before the reply was sent (an import was applied, its caller was told it failed). The waiter
    queues while the store runs (from inside its embedding call), so the handoff is due exactly then:
    queued before the call, an idle owner hands off within 0.1 s, which on a busy machine could come
    before the call arrived (then correctly refused, nothing applied)."""
    assert owner.socket_path is not None
    svc = owner.services.built
    assert svc is not None
    waiters: list[subprocess.Popen[str]] = []
    real_embed = svc.embedder.embed

    def embed_then_queue_a_waiter(texts: Any) -> Any:
        out = real_embed(texts)
        waiter = subprocess.Popen([sys.executable, "-c", HOLD_TICKET, str(owner.lease.waiters_dir)],
                                  stdout=subprocess.PIPE, text=True)
        waiters.append(waiter)
        assert waiter.stdout is not None and waiter.stdout.readline().strip() == "queued"
        return out

    monkeypatch.setattr(svc.embedder, "embed", embed_then_queue_a_waiter)
    try:
        args = _store_args("stored just before the owner hands off")
        reply = PeerClient(owner.socket_path, 1 << 20).request("store", args, time.monotonic() + 30)
        assert reply["stored"] and reply["id"] == args["id"]
        def serving() -> list[threading.Thread]:
            return [t for t in threading.enumerate() if t.name.startswith(("clarity-peer", "clarity-owner"))]

        end = time.monotonic() + 15
        while (owner.lease.held or serving()) and time.monotonic() < end:
            time.sleep(0.05)
        assert not owner.lease.held  # it did hand off
        assert not serving()  # and its step-down ended the server's threads
        assert len(waiters) == 1
    finally:
        for waiter in waiters:
            waiter.kill()
            waiter.wait()


def test_connect_is_bounded_by_the_deadline(tmp_path: Path) -> None:
    """Regression: connect() to an owner that stopped accepting blocked far past the call's deadline."""
    path = tmp_path / "frozen.sock"
    result: list[BaseException] = []

    def go() -> None:
        try:
            PeerClient(path, 4096).request("echo", {}, time.monotonic() + 0.05)
        except BaseException as e:
            result.append(e)

    with full_backlog(path):  # the next connect blocks
        t = threading.Thread(target=go, daemon=True)
        t0 = time.monotonic()
        t.start()
        t.join(timeout=5)
        assert not t.is_alive(), "connect() ignored the deadline"
        assert time.monotonic() - t0 < 2 and isinstance(result[0], NotSent | OwnerTimeout)


def _echo(op: str, args: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
    if op == "big":
        return {"x": "y" * 8000}
    if op == "crash":
        raise RuntimeError("boom")
    return {"echo": args}


def test_an_oversized_reply_becomes_an_error_that_says_how_to_page(tmp_path: Path) -> None:
    """Regression: the owner sent a reply over the frame limit; the client refused it but kept the
    connection, whose next reply was then read out of step (the session's link broke for good)."""
    srv = OwnerServer(tmp_path / "s.sock", _echo, max_frame=4096)
    srv.start()
    try:
        client = PeerClient(srv.path, 4096)
        with pytest.raises(ReplyTooLarge, match="smaller `limit`"):
            client.request("big", {}, time.monotonic() + 5)
        assert client.request("echo", {"a": 1}, time.monotonic() + 5) == {"echo": {"a": 1}}
    finally:
        srv.stop()


def test_idle_connections_time_out_and_the_client_reconnects(tmp_path: Path) -> None:
    srv = OwnerServer(tmp_path / "s.sock", _echo, max_frame=4096, idle_timeout_s=0.3)
    srv.start()
    try:
        client = PeerClient(srv.path, 4096)
        assert client.request("echo", {}, time.monotonic() + 5) == {"echo": {}}
        end = time.monotonic() + 5
        while [t for t in threading.enumerate() if t.name.startswith("clarity-peer")] and time.monotonic() < end:
            time.sleep(0.05)
        assert not [t for t in threading.enumerate() if t.name.startswith("clarity-peer")]
        assert client.request("echo", {"again": True}, time.monotonic() + 5) == {"echo": {"again": True}}
    finally:
        srv.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith(("clarity-peer", "clarity-owner"))]


def test_an_unexpected_error_reads_the_same_from_owner_and_peer(owner: Coordinator, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the service did not expect reaches the caller as a readable ClarityError, with the
    same message whether the call ran here or was forwarded."""
    svc = owner.services.service()

    def broken(op: str, args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(svc, "execute", broken)
    with pytest.raises(ClarityError) as here:
        owner.call("list", {})
    assert owner.socket_path is not None
    with pytest.raises(ClarityError) as there:
        PeerClient(owner.socket_path, 1 << 20).request("list", {}, time.monotonic() + 5)
    assert here.value.message == there.value.message == "list failed in the owner: RuntimeError: boom"


def test_the_client_drops_its_connection_after_a_receive_error(tmp_path: Path) -> None:
    """Regression: one bad reply (here a frame over the client's limit) left the connection out of step
    for good: every later call of that session read the rest of it."""
    path = tmp_path / "odd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    served: list[int] = []

    def serve() -> None:
        for n in range(2):
            conn, _ = listener.accept()
            while True:
                try:
                    req = wire.recv_frame(conn, 1 << 20)
                except (EOFError, OSError):
                    break
                served.append(n)
                if n == 0:
                    conn.sendall(struct.pack("!I", 9000) + b"x" * 9000)  # over the client's 4096
                else:
                    wire.send_frame(conn, {"id": req["id"], "ok": True, "result": {"fresh": True}})
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = PeerClient(path, 4096)
    with pytest.raises(ProtocolError):
        client.request("echo", {}, time.monotonic() + 5)
    assert client.request("echo", {}, time.monotonic() + 5) == {"fresh": True}
    assert served == [0, 1]  # the second call went over a new connection
    client.close()
    t.join(timeout=5)
    listener.close()


def test_values_json_cannot_carry_are_readable_protocol_errors() -> None:
    """Found by the fuzz review: orjson's encode error (a TypeError) escaped the wire codec raw."""
    import orjson

    from clarity.coordination import wire
    from clarity.errors import ProtocolError

    with pytest.raises(ProtocolError, match="cannot encode"):
        wire.encode({"args": {"n": 2**70}})
    frame = wire.reply_frame({"id": "r", "ok": True, "result": {"n": 2**70}}, "list", 1 << 20)
    reply = orjson.loads(frame[4:])
    assert reply["ok"] is False and "cannot encode" in reply["error"]["message"]
