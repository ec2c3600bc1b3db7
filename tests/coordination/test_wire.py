"""clarity.coordination.wire: frames (4-byte big-endian length, orjson body, a size limit) and the
request/reply codec, over real Unix sockets."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from clarity import __version__, timings
from clarity.coordination import wire
from clarity.errors import (
    ClarityError,
    InvalidArgument,
    NotFound,
    ProtocolError,
    ReplyTooLarge,
    VersionMismatch,
    from_wire,
)

LIMIT = 4096


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(10)
    b.settimeout(10)
    yield a, b
    a.close()
    b.close()


def _nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(10)
    return False


def test_a_frame_is_a_big_endian_length_and_an_orjson_body() -> None:
    msg = {"id": "r1", "op": "store", "args": {"content": "caf\u00e9 \u2603", "tags": ["a"]}, "deadline": 1.5}
    frame = wire.encode(msg)
    (size,) = struct.unpack("!I", frame[:4])
    assert size == len(frame) - 4
    assert frame[4:] == orjson.dumps(msg)


def test_frames_round_trip_in_order_over_a_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    msgs: list[Any] = [{"id": i, "ok": True, "result": {"n": i, "text": "x" * i}} for i in range(50)]
    msgs += [[1, 2], "plain", None, 3.25]
    for m in msgs:
        wire.send_frame(a, m)
    assert [wire.recv_frame(b, LIMIT) for _ in msgs] == msgs


def test_a_frame_trickling_in_byte_by_byte_is_reassembled(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    frame = wire.encode({"id": "slow", "args": {"k": "v" * 100}})

    def trickle() -> None:
        for i in range(len(frame)):
            a.sendall(frame[i:i + 1])
            if i % 16 == 0:
                time.sleep(0.001)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        assert wire.recv_frame(b, LIMIT) == {"id": "slow", "args": {"k": "v" * 100}}
    finally:
        t.join()


def test_a_parsed_request_model_travels_as_its_fields() -> None:
    class StoreArgs(BaseModel):
        content: str
        tags: list[str] = []

    frame = wire.encode({"id": "1", "op": "store", "args": StoreArgs(content="hello", tags=["t"])})
    assert orjson.loads(frame[4:]) == {"id": "1", "op": "store", "args": {"content": "hello", "tags": ["t"]}}


def test_a_value_json_cannot_carry_is_a_readable_error_and_nothing_is_sent(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    for bad in ({"x": object()}, {"x": {1, 2}}, {"x": 2 ** 70}):
        with pytest.raises(ProtocolError, match="cannot encode the message as JSON"):
            wire.send_frame(a, bad)
    assert _nothing_waiting(b)


def test_the_size_limit_is_inclusive(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    exact = {"k": "x" * 100}
    size = len(orjson.dumps(exact))
    wire.send_frame(a, exact)
    assert wire.recv_frame(b, size) == exact
    wire.send_frame(a, exact)
    with pytest.raises(ProtocolError, match=f"frame of {size} bytes is over the limit of {size - 1}"):
        wire.recv_frame(b, size - 1)


def test_an_oversized_length_is_refused_before_its_body_is_read(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(struct.pack("!I", 1 << 31))  # a 2 GiB claim and no body: refused at once, no read of 2 GiB
    t0 = time.monotonic()
    with pytest.raises(ProtocolError, match="over the limit"):
        wire.recv_frame(b, LIMIT)
    assert time.monotonic() - t0 < 1


def test_a_malformed_body_is_a_protocol_error(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    body = b"{not json"
    a.sendall(struct.pack("!I", len(body)) + body)
    with pytest.raises(ProtocolError, match="malformed frame"):
        wire.recv_frame(b, LIMIT)


def test_end_of_stream_is_eoferror_at_a_clean_end_and_mid_frame(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    with pytest.raises(EOFError):
        wire.recv_frame(b, LIMIT)
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.sendall(struct.pack("!I", 10) + b"{\"a\"")  # promised 10 bytes, sent 4, then gone
        c.close()
        with pytest.raises(EOFError):
            wire.recv_frame(d, LIMIT)
        e, f = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        e.sendall(b"\x00\x00")  # half a length
        e.close()
        with pytest.raises(EOFError):
            wire.recv_frame(f, LIMIT)
        f.close()
    finally:
        d.close()


def test_error_replies_carry_kind_and_message_and_rebuild_the_same_error() -> None:
    for err in (InvalidArgument("importance: must be at most 1"), NotFound("no memory abc"),
                ProtocolError("malformed request")):
        reply = wire.error_reply("r7", err)
        assert reply == {"id": "r7", "ok": False, "error": {"kind": err.kind, "message": err.message}}
        back = from_wire(orjson.loads(wire.encode(reply)[4:])["error"])
        assert type(back) is type(err) and back.message == err.message


def test_an_unexpected_exception_becomes_a_readable_internal_error() -> None:
    reply = wire.unexpected_reply(None, "retrieve", KeyError("vectors"))
    assert reply["id"] is None and reply["ok"] is False
    assert reply["error"]["kind"] == "internal"
    assert reply["error"]["message"] == "retrieve failed in the owner: KeyError: 'vectors'"
    back = from_wire(reply["error"])
    assert type(back) is ClarityError and "KeyError" in back.message


def test_a_reply_within_the_limit_is_sent_as_it_is() -> None:
    reply = {"id": "a", "ok": True, "result": {"memories": ["m"] * 10}}
    assert wire.reply_frame(reply, "list", LIMIT) == wire.encode(reply)


def test_a_reply_over_the_limit_becomes_an_error_that_says_how_to_page() -> None:
    reply = {"id": "big", "ok": True, "result": {"memories": ["m" * 100] * 100}}
    frame = wire.reply_frame(reply, "list_memories", LIMIT)
    assert len(frame) - 4 <= LIMIT
    out = orjson.loads(frame[4:])
    assert out["id"] == "big" and out["ok"] is False
    assert out["error"]["kind"] == ReplyTooLarge.kind
    message = out["error"]["message"]
    size = len(wire.encode(reply)) - 4
    assert message.startswith("list_memories:") and f"{size} bytes" in message and f"{LIMIT} bytes" in message
    assert "offset" in message and "limit" in message


def test_a_reply_json_cannot_carry_becomes_a_protocol_error_with_its_id() -> None:
    frame = wire.reply_frame({"id": "odd", "ok": True, "result": {"x": object()}}, "get", LIMIT)
    out = orjson.loads(frame[4:])
    assert out["id"] == "odd" and out["ok"] is False and out["error"]["kind"] == ProtocolError.kind


def test_encoding_and_decoding_are_timed_as_wire(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    before = timings.snapshot().get("wire", {}).get("n", 0)
    wire.send_frame(a, {"x": 1})
    wire.recv_frame(b, LIMIT)
    after = timings.snapshot()["wire"]["n"]
    assert after == min(timings.WINDOW, before + 2)


# ---- requests: the protocol, the version and the time left ------------------------------------

def test_a_request_carries_the_protocol_the_clarity_version_and_a_budget_not_an_instant() -> None:
    now = time.monotonic()
    req = wire.request("r1", "store", {"content": "x"}, now + 12.5)
    assert set(req) == {"id", "op", "args", "protocol", "clarity", "budget"}
    assert (req["id"], req["op"], req["args"]) == ("r1", "store", {"content": "x"})
    assert req["protocol"] == wire.PROTOCOL == 2 and req["clarity"] == __version__
    assert 12.5 - (time.monotonic() - now) <= req["budget"] <= 12.5
    assert wire.request("r2", "list", {}, now - 3)["budget"] == 0.0  # a passed deadline: nothing left


def test_the_receiver_turns_the_budget_into_a_deadline_on_its_own_monotonic_clock() -> None:
    r = wire.parse_request({"id": "a", "op": "list", "args": {"limit": 1}, "protocol": wire.PROTOCOL,
                            "clarity": "0.2.0", "budget": 4.25}, received_at=1000.0)
    assert r == wire.Request("a", "list", {"limit": 1}, wire.PROTOCOL, "0.2.0", 1004.25)
    assert r.sender == "0.2.0"
    assert wire.parse_request({"id": "b", "op": "list", "protocol": 2}, 5.0).deadline is None
    huge = wire.parse_request({"id": "c", "op": "list", "protocol": 2, "budget": 1e300}, 5.0)
    assert huge.deadline == 5.0 + wire.MAX_BUDGET_S  # a lock wait never gets an unbounded timeout


def test_a_frame_of_clarity_0_1_is_read_as_protocol_1_its_deadline_as_time_left_on_arrival(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    old = {"id": "o", "op": "store", "args": {"content": "x"}, "deadline": 1_700_000_007.5}
    r = wire.parse_request(old, received_at=50.0)
    assert (r.protocol, r.clarity, r.sender, r.deadline) == (1, None, "0.1.x", 57.5)


@pytest.mark.parametrize("bad", [
    [1], {"op": 5}, {"op": "x", "args": [1]}, {"op": "x", "protocol": "2"}, {"op": "x", "protocol": False},
    {"op": "x", "protocol": 0}, {"op": "x", "protocol": 2, "budget": "1"}, {"op": "x", "protocol": 2, "budget": True},
    {"op": "x", "protocol": 2, "budget": float("nan")}, {"op": "x", "deadline": "tomorrow"},
])
def test_a_malformed_request_is_a_protocol_error(bad: Any) -> None:
    with pytest.raises(ProtocolError, match="malformed request"):
        wire.parse_request(bad, 0.0)


def test_the_version_mismatch_message_names_both_sides_and_what_to_do() -> None:
    err = wire.version_mismatch("0.1.0", 321, 1, "0.2.0", 2)
    assert isinstance(err, VersionMismatch) and not err.retryable and err.kind == "version_mismatch"
    assert err.message == ("the store is owned by Clarity 0.1.0 (pid 321, protocol 1); this session is Clarity "
                           "0.2.0 (protocol 2): restart the older sessions")
    assert "Clarity 0.1.x (pid 5, protocol 1)" in wire.version_mismatch(None, 5, 1, "0.2.0", 2).message
    back = from_wire(orjson.loads(wire.encode(wire.error_reply("r", err))[4:])["error"])
    assert type(back) is VersionMismatch and back.message == err.message


def test_a_lease_record_without_a_protocol_is_protocol_1() -> None:
    assert wire.record_protocol({"pid": 1, "version": "0.1.0"}) == 1
    assert wire.record_protocol({"protocol": 2}) == 2
    assert wire.record_protocol({"protocol": "2"}) == 1
