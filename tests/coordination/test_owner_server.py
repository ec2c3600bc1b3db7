"""clarity.coordination.owner_server: the owner's endpoint, driven by raw sockets and real clients.
(tests/test_peers.py covers the basic round trip, the caller's deadline, an oversized frame, and where a
long socket path goes.)"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity import __version__
from clarity.coordination import wire
from clarity.coordination.owner_server import OwnerServer, runtime_dir
from clarity.coordination.peer_client import PeerClient
from clarity.errors import OwnerGone, UnsafeStore

pytestmark = pytest.mark.timeout(120)
LIMIT = 64 * 1024
SYSTEM_PY = "/usr/bin/python3"
P = {"protocol": wire.PROTOCOL}  # what every request of this version carries


class Recorder:
    """The handler: records every call; `echo`, `big`, `slow` (until released or `s` seconds), `crash`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], float | None]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        with self.lock:
            self.calls.append((op, args, deadline))
        if op == "slow":
            self.started.set()
            self.release.wait(float(args.get("s", 60)))
            return {"slow": "done"}
        if op == "big":
            return {"blob": "x" * int(args["n"])}
        if op == "crash":
            raise ZeroDivisionError("division by zero")
        return {"echo": args}


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short private folder (socket paths must stay under 104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="clo-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_server(folder: Path, recorder: Recorder) -> Iterator[Callable[..., OwnerServer]]:
    servers: list[OwnerServer] = []

    def make(**kw: Any) -> OwnerServer:
        srv = OwnerServer(folder / "owner.sock", recorder, max_frame=LIMIT, **kw)
        srv.start()
        servers.append(srv)
        return srv

    yield make
    recorder.release.set()
    for srv in servers:
        srv.stop()


def _raw(path: Path, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def _ask(s: socket.socket, req: Any) -> Any:
    wire.send_frame(s, req)
    return wire.recv_frame(s, LIMIT)


def _closed(s: socket.socket, timeout: float = 5) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_the_handler_gets_op_args_and_the_callers_deadline(make_server: Callable[..., OwnerServer],
                                                           recorder: Recorder) -> None:
    """The frame carries the caller's time left; the handler gets it as a deadline on this process's
    monotonic clock, counted from the frame's arrival."""
    srv = make_server()
    s = _raw(srv.path)
    t0 = time.monotonic()
    assert _ask(s, {"id": "a", "op": "echo", "args": {"k": [1, 2]}, "budget": 30, **P}) == \
        {"id": "a", "ok": True, "result": {"echo": {"k": [1, 2]}}}
    t1 = time.monotonic()
    assert _ask(s, {"id": "b", "op": "echo", **P}) == {"id": "b", "ok": True, "result": {"echo": {}}}
    # an absolute Unix time (what protocol 1 sent) is read too: turned into time left on arrival
    assert _ask(s, {"id": "c", "op": "echo", "args": {}, "deadline": time.time() + 20, **P})["ok"] is True
    t2 = time.monotonic()
    (op_a, args_a, dl_a), (_, args_b, dl_b), (_, _, dl_c) = recorder.calls
    assert (op_a, args_a, args_b, dl_b) == ("echo", {"k": [1, 2]}, {}, None)
    assert dl_a is not None and t0 + 30 <= dl_a <= t1 + 30
    assert dl_c is not None and t1 + 19.9 <= dl_c <= t2 + 20.1
    s.close()


def test_a_request_of_another_protocol_runs_nothing_and_gets_a_reply_every_version_reads(
        make_server: Callable[..., OwnerServer], recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    """A frame of Clarity 0.1.x (no protocol, an absolute `deadline`) and one of a newer protocol get a
    version_mismatch error in the reply format of protocol 1, naming both sides; the handler never runs,
    the connection keeps serving, and the owner logs it once per sender version."""
    srv = make_server()
    s = _raw(srv.path)
    old = {"id": "old", "op": "store", "args": {"content": "x"}, "deadline": time.time() + 30}
    me = f"Clarity {__version__} (pid {os.getpid()}, protocol {wire.PROTOCOL})"
    with caplog.at_level(logging.WARNING, logger="clarity.coordination.owner_server"):
        for _ in range(2):
            assert _ask(s, old) == {"id": "old", "ok": False, "error": {
                "kind": "version_mismatch",
                "message": f"the store is owned by {me}; this session is Clarity 0.1.x (protocol 1): "
                           "restart the older sessions"}}
        newer = _ask(s, {"id": "new", "op": "store", "args": {}, "protocol": wire.PROTOCOL + 1, "clarity": "9.1.0",
                         "budget": 30})
    assert newer["ok"] is False and newer["error"]["kind"] == "version_mismatch"
    assert newer["error"]["message"] == (f"the store is owned by {me}; this session is Clarity 9.1.0 (protocol "
                                         f"{wire.PROTOCOL + 1}): restart the older sessions")
    assert recorder.calls == []
    assert _ask(s, {"id": "ok", "op": "echo", "args": {}, **P})["ok"] is True
    assert caplog.text.count("refused a request of Clarity 0.1.x") == 1
    assert caplog.text.count("refused a request of Clarity 9.1.0") == 1
    s.close()


@pytest.mark.parametrize("bad", [{"protocol": "2"}, {"protocol": True}, {"protocol": 0}, {"budget": "5"},
                                 {"budget": None}, {"deadline": "soon"}])
def test_a_malformed_protocol_or_budget_is_a_protocol_error(make_server: Callable[..., OwnerServer],
                                                             recorder: Recorder, bad: dict[str, Any]) -> None:
    srv = make_server()
    s = _raw(srv.path)
    reply = _ask(s, {"id": "m", "op": "echo", "args": {}, **P, **bad})
    assert reply["ok"] is False and reply["error"]["kind"] == "protocol", reply
    assert recorder.calls == []
    s.close()


def test_the_socket_is_0600_even_under_a_loose_umask(make_server: Callable[..., OwnerServer]) -> None:
    old = os.umask(0)
    try:
        srv = make_server()
    finally:
        os.umask(old)
    st = os.lstat(srv.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


@pytest.mark.parametrize("req", [[1, 2], "echo", {"id": "m1", "op": 5}, {"id": "m2", "op": "echo", "args": [1]}])
def test_a_malformed_request_gets_one_error_reply_and_the_connection_keeps_serving(
        make_server: Callable[..., OwnerServer], recorder: Recorder, req: Any) -> None:
    srv = make_server()
    s = _raw(srv.path)
    reply = _ask(s, req)
    assert reply["ok"] is False and reply["error"] == {"kind": "protocol", "message": "malformed request"}
    assert reply["id"] == (req.get("id") if isinstance(req, dict) else None)
    assert _ask(s, {"id": "next", "op": "echo", "args": {}, **P})["ok"] is True
    assert [c[0] for c in recorder.calls] == ["echo"]  # the malformed one never reached the handler
    s.close()


def test_a_malformed_frame_gets_one_error_reply_then_the_connection_closes(
        make_server: Callable[..., OwnerServer], recorder: Recorder) -> None:
    srv = make_server()
    s = _raw(srv.path)
    s.sendall(struct.pack("!I", 5) + b"{nope")
    reply = wire.recv_frame(s, LIMIT)
    assert reply["ok"] is False and reply["error"]["kind"] == "protocol" and "malformed frame" in \
        reply["error"]["message"]
    assert _closed(s)  # out of step: the stream cannot be trusted any more
    assert recorder.calls == []
    s.close()


def test_pipelined_requests_each_get_exactly_one_reply_in_order(make_server: Callable[..., OwnerServer]) -> None:
    srv = make_server()
    s = _raw(srv.path)
    reqs = [{"id": f"r{i}", "op": "crash" if i % 3 == 0 else "echo", "args": {"i": i}, **P} for i in range(12)]
    s.sendall(b"".join(wire.encode(r) for r in reqs))
    replies = [wire.recv_frame(s, LIMIT) for _ in reqs]
    assert [r["id"] for r in replies] == [r["id"] for r in reqs]
    for i, r in enumerate(replies):
        if i % 3 == 0:
            assert r["ok"] is False and r["error"]["kind"] == "internal"
            assert r["error"]["message"] == "crash failed in the owner: ZeroDivisionError: division by zero"
        else:
            assert r == {"id": f"r{i}", "ok": True, "result": {"echo": {"i": i}}}
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):
        s.recv(1)  # and nothing more
    s.close()


def test_a_reply_over_the_frame_limit_is_replaced_by_a_paging_error(make_server: Callable[..., OwnerServer],
                                                                     recorder: Recorder) -> None:
    srv = make_server()
    s = _raw(srv.path)
    reply = _ask(s, {"id": "big", "op": "big", "args": {"n": LIMIT * 2}, **P})
    assert reply["id"] == "big" and reply["ok"] is False and reply["error"]["kind"] == "reply_too_large"
    assert "big:" in reply["error"]["message"] and "offset" in reply["error"]["message"]
    assert _ask(s, {"id": "small", "op": "big", "args": {"n": 10}, **P})["result"] == {"blob": "x" * 10}
    s.close()


def test_connections_are_served_concurrently(make_server: Callable[..., OwnerServer], recorder: Recorder) -> None:
    srv = make_server()
    slow_client = PeerClient(srv.path, LIMIT)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(slow_client.request("slow", {}, time.monotonic() + 60)))
    t.start()
    try:
        assert recorder.started.wait(10)
        t0 = time.monotonic()
        fast = PeerClient(srv.path, LIMIT)
        assert fast.request("echo", {"n": 1}, time.monotonic() + 10) == {"echo": {"n": 1}}
        assert time.monotonic() - t0 < 5 and t.is_alive()  # served while the slow call still runs
        fast.close()
    finally:
        recorder.release.set()
        t.join(30)
    assert out == [{"slow": "done"}]
    slow_client.close()


def test_an_idle_connection_is_closed(make_server: Callable[..., OwnerServer]) -> None:
    srv = make_server(idle_timeout_s=0.3)
    s = _raw(srv.path)
    assert _ask(s, {"id": "1", "op": "echo", "args": {}, **P})["ok"] is True
    t0 = time.monotonic()
    assert _closed(s, timeout=10)
    assert 0.25 <= time.monotonic() - t0 < 5
    s.close()


def test_start_replaces_a_leftover_file_or_link_at_the_socket_path(folder: Path, recorder: Recorder,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    victim = folder / "victim"
    victim.write_bytes(b"precious")
    path = folder / "owner.sock"
    path.symlink_to(victim)
    srv = OwnerServer(path, recorder, max_frame=LIMIT)
    with caplog.at_level(logging.WARNING, logger="clarity.coordination.owner_server"):
        srv.start()
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert victim.read_bytes() == b"precious"
        assert "removing" in caplog.text
        assert PeerClient(path, LIMIT).request("echo", {}, time.monotonic() + 10) == {"echo": {}}
    finally:
        srv.stop()
    path.write_bytes(b"a regular file left behind")
    srv = OwnerServer(path, recorder, max_frame=LIMIT)
    srv.start()
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        srv.stop()


def test_stop_sends_the_reply_of_an_operation_that_runs_then_closes_everything(
        make_server: Callable[..., OwnerServer], recorder: Recorder) -> None:
    srv = make_server(drain_s=10)
    busy = PeerClient(srv.path, LIMIT)
    idle = _raw(srv.path)
    assert _ask(idle, {"id": "i", "op": "echo", "args": {}, **P})["ok"] is True
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(busy.request("slow", {"s": 0.5}, time.monotonic() + 30)))
    t.start()
    assert recorder.started.wait(10)
    t0 = time.monotonic()
    srv.stop()
    took = time.monotonic() - t0
    t.join(10)
    assert out == [{"slow": "done"}], "the reply of an operation that ran was not sent"
    assert took < 5
    assert not srv.path.exists()
    assert _closed(idle)
    assert not [th for th in srv._threads if th.is_alive()]
    with pytest.raises(OwnerGone):
        PeerClient(srv.path, LIMIT).request("echo", {}, time.monotonic() + 2)
    idle.close()
    busy.close()


def test_stop_is_bounded_by_drain_s_when_an_operation_does_not_finish(make_server: Callable[..., OwnerServer],
                                                                       recorder: Recorder) -> None:
    srv = make_server(drain_s=0.5)
    s = _raw(srv.path)
    wire.send_frame(s, {"id": "stuck", "op": "slow", "args": {"s": 60}, **P})
    assert recorder.started.wait(10)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 3
    recorder.release.set()
    s.close()


def test_a_peer_of_another_uid_is_refused_before_a_byte_is_read(make_server: Callable[..., OwnerServer],
                                                                 recorder: Recorder, folder: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    if not os.path.exists(SYSTEM_PY):
        pytest.skip(f"needs {SYSTEM_PY} (another user cannot run this virtualenv's interpreter)")
    srv = make_server()
    os.chmod(folder, 0o755)  # loosened for the test: the 0600 socket would stop the other user first
    os.chmod(srv.path, 0o777)
    frame = wire.encode({"id": "x", "op": "echo", "args": {"secret": 1}, **P})
    script = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect(sys.argv[1])\n"
              "try:\n    s.sendall(bytes.fromhex(sys.argv[2]))\n    print(repr(s.recv(100)))\n"
              "except OSError as e:\n    print('error', type(e).__name__)\n")
    out = subprocess.run([SYSTEM_PY, "-c", script, str(srv.path), frame.hex()], capture_output=True, text=True,
                         timeout=60, user=65534, group=65534, extra_groups=[], cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("b''", "error ConnectionResetError", "error BrokenPipeError")
    assert recorder.calls == []
    assert PeerClient(srv.path, LIMIT).request("echo", {}, time.monotonic() + 10) == {"echo": {}}  # still serving us


def test_runtime_dir_uses_a_private_xdg_runtime_dir_and_refuses_a_linked_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert runtime_dir() == xdg / "clarity"
    assert stat.S_IMODE((xdg / "clarity").stat().st_mode) == 0o700
    link = tmp_path / "xdg-link"
    link.symlink_to(xdg)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(link))
    with pytest.raises(UnsafeStore, match="symlink"):
        runtime_dir()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    assert runtime_dir() == tmp / f"clarity-{os.getuid()}"
    (tmp / f"clarity-{os.getuid()}").chmod(0o777)
    with pytest.raises(UnsafeStore, match="writable by group or others"):
        runtime_dir()


def test_stop_leaves_no_socket_and_a_new_server_can_bind_the_same_path(make_server: Callable[..., OwnerServer],
                                                                        recorder: Recorder) -> None:
    first = make_server()
    first.stop()
    assert not first.path.exists()
    second = make_server()
    client = PeerClient(second.path, LIMIT)
    assert client.request("echo", {"n": 2}, time.monotonic() + 10) == {"echo": {"n": 2}}
    client.close()


def test_a_request_whose_caller_hung_up_before_it_was_read_never_runs(make_server: Callable[..., OwnerServer],
                                                                      recorder: Recorder) -> None:
    """The owner is busy on this connection (as a stopped or starved owner is) while the caller sends its
    next request, gives up and closes its side: the time left in that frame was spent before the owner
    read it, so it is answered "nothing was applied" and never run."""
    srv = make_server()
    s = _raw(srv.path)
    wire.send_frame(s, {"id": "first", "op": "slow", "args": {"s": 60}, **P})
    assert recorder.started.wait(10)
    wire.send_frame(s, {"id": "ghost", "op": "echo", "args": {"ghost": True}, "budget": 30, **P})
    s.shutdown(socket.SHUT_WR)  # the caller gave up: its side is closed (it can still read, for the test)
    recorder.release.set()
    assert wire.recv_frame(s, LIMIT)["id"] == "first"
    reply = wire.recv_frame(s, LIMIT)
    assert reply["id"] == "ghost" and reply["ok"] is False and reply["error"]["kind"] == "coordination_timeout"
    assert "closed its connection" in reply["error"]["message"] and "nothing was applied" in reply["error"]["message"]
    assert [c[0] for c in recorder.calls] == ["slow"]
    s.close()


@pytest.mark.parametrize("step_s", [-3 * 3600.0, 3 * 3600.0])
def test_a_wall_clock_step_changes_no_deadline_at_the_owner(make_server: Callable[..., OwnerServer],
                                                            recorder: Recorder, monkeypatch: pytest.MonkeyPatch,
                                                            step_s: float) -> None:
    srv = make_server()
    s = _raw(srv.path)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + step_s)
    t0 = time.monotonic()
    assert _ask(s, {"id": "a", "op": "echo", "args": {}, "budget": 5, **P})["ok"] is True
    assert _ask(s, {"id": "b", "op": "echo", "args": {}, "budget": -0.5, **P})["error"]["kind"] == \
        "coordination_timeout"
    ((_, _, deadline),) = recorder.calls
    assert deadline is not None and t0 + 5 <= deadline <= time.monotonic() + 5
    s.close()
