"""clarity.coordination.peer_client: the forwarding client against a real OwnerServer and against scripted
owners that misbehave. (tests/test_peers.py covers the round trip, OwnerTimeout, a request past its
deadline and a missing socket; tests/test_security.py an owner of another uid.)"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity import __version__, timings
from clarity.coordination import wire
from clarity.coordination.owner_server import OwnerServer
from clarity.coordination.peer_client import PeerClient
from clarity.errors import ClarityError, NotSent, OwnerGone, OwnerTimeout, ProtocolError, VersionMismatch
from tests.harness.sockets import full_backlog

pytestmark = pytest.mark.timeout(120)
LIMIT = 64 * 1024


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Scripted:
    """A fake owner: accepts connections one after another and runs `serve(conn, n)` on the n-th."""

    def __init__(self, path: Path, serve: Callable[[socket.socket, int], None]) -> None:
        self.path = path
        self.serve = serve
        self.accepted = 0
        self.requests: list[Any] = []
        self.eofs = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def read(self, conn: socket.socket) -> Any:
        """The next request on `conn` (recorded), or None at end of stream (counted)."""
        try:
            req = wire.recv_frame(conn, LIMIT)
        except (EOFError, OSError):
            self.eofs += 1
            return None
        self.requests.append(req)
        return req

    def _loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            self.accepted += 1
            try:
                self.serve(conn, self.accepted)
            finally:
                conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(10)
        self._sock.close()


@pytest.fixture
def scripted(folder: Path) -> Iterator[Callable[[Callable[[socket.socket, int], None]], Scripted]]:
    made: list[Scripted] = []

    def make(serve: Callable[[socket.socket, int], None]) -> Scripted:
        s = Scripted(folder / "owner.sock", serve)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _echo_handler(calls: list[tuple[str, dict[str, Any]]], gate: threading.Event | None = None) -> Any:
    def handler(op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        calls.append((op, args))
        if op == "slow" and gate is not None:
            gate.wait(float(args.get("s", 30)))
        return {"echo": args}

    return handler


@pytest.fixture
def owner(folder: Path) -> Iterator[tuple[OwnerServer, list[tuple[str, dict[str, Any]]], threading.Event]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    gate = threading.Event()
    srv = OwnerServer(folder / "owner.sock", _echo_handler(calls, gate), max_frame=LIMIT, idle_timeout_s=0.3)
    srv.start()
    yield srv, calls, gate
    gate.set()
    srv.stop()


def test_a_reply_with_another_id_is_a_protocol_error_and_the_connection_is_dropped(scripted: Any) -> None:
    def serve(conn: socket.socket, n: int) -> None:
        while (req := fake.read(conn)) is not None:
            rid = "someone-else" if n == 1 else req["id"]
            wire.send_frame(conn, {"id": rid, "ok": True, "result": {"n": n}})

    fake = scripted(serve)
    client = PeerClient(fake.path, LIMIT)
    with pytest.raises(ProtocolError, match="unexpected reply"):
        client.request("get", {}, time.monotonic() + 10)
    assert client.request("get", {}, time.monotonic() + 10) == {"n": 2}  # on a fresh connection
    assert fake.accepted == 2 and fake.eofs >= 1
    client.close()


def test_not_owner_from_the_owner_becomes_owner_gone_and_closes_the_connection(scripted: Any) -> None:
    def serve(conn: socket.socket, n: int) -> None:
        while (req := fake.read(conn)) is not None:
            wire.send_frame(conn, {"id": req["id"], "ok": False,
                                   "error": {"kind": "not_owner", "message": "stepped down for pid 42"}})

    fake = scripted(serve)
    client = PeerClient(fake.path, LIMIT)
    with pytest.raises(OwnerGone, match="stepped down for pid 42"):
        client.request("store", {"id": "x"}, time.monotonic() + 10)
    deadline = time.monotonic() + 5
    while fake.eofs < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.eofs == 1  # the client hung up: the next call looks for the owner afresh


def test_other_owner_errors_arrive_as_their_kind_with_the_owners_message(scripted: Any) -> None:
    kinds = iter([("invalid_argument", "tags: too many"), ("brand_new_kind", "something the owner knows")])

    def serve(conn: socket.socket, n: int) -> None:
        while (req := fake.read(conn)) is not None:
            kind, message = next(kinds)
            wire.send_frame(conn, {"id": req["id"], "ok": False, "error": {"kind": kind, "message": message}})

    fake = scripted(serve)
    client = PeerClient(fake.path, LIMIT)
    with pytest.raises(ClarityError) as e:
        client.request("store", {}, time.monotonic() + 10)
    assert e.value.kind == "invalid_argument" and e.value.message == "tags: too many"
    with pytest.raises(ClarityError) as e:
        client.request("store", {}, time.monotonic() + 10)
    assert type(e.value) is ClarityError and e.value.message == "something the owner knows"
    assert fake.accepted == 1  # an error reply keeps the connection
    client.close()


def test_an_owner_that_closes_before_replying_is_owner_gone(scripted: Any) -> None:
    def serve(conn: socket.socket, n: int) -> None:
        req = fake.read(conn)
        if n == 1:
            return  # read the request, then die without a word
        while req is not None:
            wire.send_frame(conn, {"id": req["id"], "ok": True, "result": {"attempt": n}})
            req = fake.read(conn)

    fake = scripted(serve)
    client = PeerClient(fake.path, LIMIT)
    with pytest.raises(OwnerGone):
        client.request("store", {"id": "same"}, time.monotonic() + 10)
    assert client.request("store", {"id": "same"}, time.monotonic() + 10) == {"attempt": 2}
    assert [r["args"] for r in fake.requests] == [{"id": "same"}, {"id": "same"}]
    client.close()


def test_after_a_timeout_the_connection_is_dropped_and_the_next_call_works(owner: Any) -> None:
    srv, calls, gate = owner
    client = PeerClient(srv.path, LIMIT)
    with pytest.raises(OwnerTimeout):
        client.request("slow", {"s": 2}, time.monotonic() + 0.3)
    gate.set()
    assert client.request("echo", {"after": 1}, time.monotonic() + 10) == {"echo": {"after": 1}}
    assert calls[-1] == ("echo", {"after": 1})
    client.close()


def test_a_connection_the_owner_closed_while_idle_is_noticed_before_sending(owner: Any) -> None:
    srv, calls, _ = owner  # idle_timeout_s=0.3
    client = PeerClient(srv.path, LIMIT)
    assert client.request("echo", {"n": 1}, time.monotonic() + 10) == {"echo": {"n": 1}}
    time.sleep(0.8)
    assert client.request("echo", {"n": 2}, time.monotonic() + 10) == {"echo": {"n": 2}}
    assert calls == [("echo", {"n": 1}), ("echo", {"n": 2})]  # each sent once, none lost
    client.close()


def test_the_client_follows_a_restarted_owner(folder: Path) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    first = OwnerServer(folder / "owner.sock", _echo_handler(calls), max_frame=LIMIT)
    first.start()
    client = PeerClient(first.path, LIMIT)
    assert client.request("echo", {"to": "first"}, time.monotonic() + 10) == {"echo": {"to": "first"}}
    first.stop()
    second = OwnerServer(folder / "owner.sock", _echo_handler(calls), max_frame=LIMIT)
    second.start()
    try:
        assert client.request("echo", {"to": "second"}, time.monotonic() + 10) == {"echo": {"to": "second"}}
    finally:
        second.stop()
        client.close()


def test_a_socket_nobody_listens_on_is_owner_gone(folder: Path) -> None:
    path = folder / "owner.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays: a dead owner's leftover
    t0 = time.monotonic()
    with pytest.raises(OwnerGone, match="connect"):
        PeerClient(path, LIMIT).request("echo", {}, time.monotonic() + 10)
    assert time.monotonic() - t0 < 2


def test_an_owner_that_does_not_accept_is_not_sent_and_gets_nothing(folder: Path) -> None:
    """Its backlog is full: the connection is refused with EAGAIN at once (NotSent: nothing reached it)."""
    path = folder / "owner.sock"
    with full_backlog(path) as (listener, fillers):
        t0 = time.monotonic()
        with pytest.raises(NotSent):
            PeerClient(path, LIMIT).request("store", {"content": "x"}, time.monotonic() + 5)
        assert time.monotonic() - t0 < 5.5
        listener.settimeout(0.2)
        received = b""
        for _ in fillers:
            conn, _ = listener.accept()
            conn.setblocking(False)
            try:
                received += conn.recv(100)
            except BlockingIOError:
                pass
            conn.close()
        assert received == b""


def test_a_call_waiting_for_the_connection_gives_up_at_its_deadline_unsent(owner: Any) -> None:
    srv, calls, gate = owner
    client = PeerClient(srv.path, LIMIT)
    holder = threading.Thread(target=lambda: client.request("slow", {"s": 30}, time.monotonic() + 30))
    holder.start()
    try:
        end = time.monotonic() + 10
        while not calls and time.monotonic() < end:
            time.sleep(0.01)
        t0 = time.monotonic()
        with pytest.raises(NotSent, match="held the connection"):
            client.request("echo", {"late": True}, time.monotonic() + 0.3)
        assert 0.25 <= time.monotonic() - t0 < 2
    finally:
        gate.set()
        holder.join(30)
    assert ("echo", {"late": True}) not in calls
    client.close()


def test_one_client_shared_by_many_threads_matches_every_reply_to_its_call(owner: Any) -> None:
    srv, calls, _ = owner
    client = PeerClient(srv.path, LIMIT)
    wrong: list[Any] = []

    def work(k: int) -> None:
        for i in range(25):
            got = client.request("echo", {"k": k, "i": i}, time.monotonic() + 30)
            if got != {"echo": {"k": k, "i": i}}:
                wrong.append(got)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == [] and len(calls) == 200
    client.close()


def test_a_round_trip_is_timed_as_forward(owner: Any) -> None:
    srv, _, _ = owner
    timings.reset()
    client = PeerClient(srv.path, LIMIT)
    client.request("echo", {}, time.monotonic() + 10)
    client.close()
    assert timings.snapshot()["forward"]["n"] == 1


def test_the_frame_carries_the_protocol_the_version_and_the_time_left_never_an_instant(scripted: Any) -> None:
    def serve(conn: socket.socket, n: int) -> None:
        while (req := fake.read(conn)) is not None:
            wire.send_frame(conn, {"id": req["id"], "ok": True, "result": {}})

    fake = scripted(serve)
    client = PeerClient(fake.path, LIMIT)
    before = time.monotonic()
    client.request("list", {"limit": 1}, before + 7.5)
    (req,) = fake.requests
    assert set(req) == {"id", "op", "args", "protocol", "clarity", "budget"}  # no `deadline` instant
    assert (req["op"], req["args"], req["protocol"], req["clarity"]) == ("list", {"limit": 1}, wire.PROTOCOL,
                                                                         __version__)
    assert 7.5 - (time.monotonic() - before) <= req["budget"] <= 7.5
    client.close()


def _record(protocol: int | None, version: str, pid: int = 4242, epoch: int = 7) -> dict[str, Any]:
    rec: dict[str, Any] = {"pid": pid, "version": version, "epoch": epoch}
    if protocol is not None:
        rec["protocol"] = protocol
    return rec


def test_an_owner_of_another_protocol_is_refused_before_a_byte_is_sent(scripted: Any,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The lease record names an owner of Clarity 0.1.0 (no protocol: protocol 1): every call fails at once
    with the one message, nothing is sent, it is logged once; once a current owner holds the lease the
    same client serves again."""
    def serve(conn: socket.socket, n: int) -> None:
        while (req := fake.read(conn)) is not None:
            wire.send_frame(conn, {"id": req["id"], "ok": True, "result": {"served": n}})

    fake = scripted(serve)
    record: dict[str, Any] = _record(None, "0.1.0")
    client = PeerClient(fake.path, LIMIT, lambda: record)
    want = (f"the store is owned by Clarity 0.1.0 (pid 4242, protocol 1); this session is Clarity {__version__} "
            f"(protocol {wire.PROTOCOL}): restart the older sessions")
    with caplog.at_level(logging.INFO, logger="clarity.coordination.peer_client"):
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(VersionMismatch) as e:
                client.request("store", {"content": "x", "mode": "new"}, time.monotonic() + 10)
            assert e.value.message == want and time.monotonic() - t0 < 1
    assert not VersionMismatch.retryable
    assert caplog.text.count("restart the older sessions") == 1
    assert fake.requests == []  # not one frame reached the older owner
    record = _record(wire.PROTOCOL, __version__, pid=5151, epoch=8)  # the older owner left; a current one serves
    assert client.request("list", {}, time.monotonic() + 10) == {"served": fake.accepted}
    client.close()


def test_an_owner_of_a_newer_protocol_is_refused_with_the_same_words(scripted: Any) -> None:
    fake = scripted(lambda conn, n: None)
    client = PeerClient(fake.path, LIMIT, lambda: _record(wire.PROTOCOL + 1, "0.3.0", pid=99))
    with pytest.raises(VersionMismatch, match=re.escape(
            f"owned by Clarity 0.3.0 (pid 99, protocol {wire.PROTOCOL + 1}); this session is Clarity {__version__} "
            f"(protocol {wire.PROTOCOL}): restart the older sessions")):
        client.request("list", {}, time.monotonic() + 10)
    assert fake.requests == []
    client.close()


def test_an_unreadable_lease_record_decides_nothing(owner: Any) -> None:
    srv, calls, _ = owner
    client = PeerClient(srv.path, LIMIT, lambda: None)
    assert client.request("echo", {"n": 1}, time.monotonic() + 10) == {"echo": {"n": 1}}
    client.close()


def test_a_released_record_of_an_older_owner_decides_nothing(scripted: Any) -> None:
    """An older owner stepping down (its record stamped released) still listens for a moment: what it gets
    is answered "not owner" (the caller retries at the next owner), never a version mismatch."""
    def serve(conn: socket.socket, n: int) -> None:
        while (req := fake.read(conn)) is not None:
            wire.send_frame(conn, {"id": req["id"], "ok": False,
                                   "error": {"kind": "not_owner", "message": "this process no longer owns the lease"}})

    fake = scripted(serve)
    client = PeerClient(fake.path, LIMIT, lambda: {**_record(None, "0.1.0"), "released_at": time.time()})
    with pytest.raises(OwnerGone, match="no longer owns"):
        client.request("list", {}, time.monotonic() + 10)
    client.close()
