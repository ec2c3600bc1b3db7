"""Frames on the owner's socket and the request/reply codec.

A frame is a 4-byte big-endian length and an orjson body, at most `max_frame` bytes of body.
Request (`request`): `{"id", "op", "args", "protocol", "clarity", "budget"}`: the sender's protocol
(`PROTOCOL`) and Clarity version, and its remaining time in seconds when it sent the frame. The
receiver turns the budget into a deadline on its own monotonic clock on arrival (`parse_request`), so
no wall-clock instant crosses the socket and a clock step on either side changes no wait.
An older peer's frame (protocol 1, Clarity 0.1.x) has no protocol and a `deadline` (an absolute Unix
time) instead of a budget; it is still read: the wall clock is looked at once, on arrival, to turn it
into a budget, and the owner answers it (with `version_mismatch`, owner_server.py) in the format that
peer reads.
Reply `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error": {"kind", "message"}}` (unchanged
since protocol 1, so a peer of any version can read an error). Every error, expected or not, travels
as a readable `{kind, message}`, so a peer's caller sees the same message the owner's own caller would.

Protocol versions: `PROTOCOL` is bumped whenever a request, an operation or its arguments change in a
way a session of the previous protocol could misread. An owner serves only its own protocol; a
session checks the owner's protocol (lease.json names it, lease.py) before it sends anything, and
`version_mismatch` words what both sides then say.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson

from clarity import __version__, timings
from clarity.errors import ClarityError, ProtocolError, ReplyTooLarge, VersionMismatch

_LEN = struct.Struct("!I")

PROTOCOL = 2
"""This Clarity's protocol on the owner's socket. 1: Clarity 0.1.x (no protocol in its frames, an
absolute Unix-time `deadline`); 2: the protocol and the Clarity version in every request, a `budget`."""
LEGACY_PROTOCOL = 1  # the protocol of a frame or a lease record that names none
_RELEASES = {1: "0.1.x"}  # the Clarity versions of the protocols whose frames do not carry it
MAX_BUDGET_S = 86_400.0  # a budget is capped at a day: a lock wait cannot take an unbounded timeout


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def _plain(obj: Any) -> Any:
    """A parsed request (a pydantic model) travels as its fields: encoded once, straight to JSON."""
    dump = getattr(obj, "model_dump", None)
    if dump is None:
        raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")
    return dump()


def encode(obj: Any) -> bytes:
    """One frame. ProtocolError (readable, nothing sent) for a value JSON cannot carry."""
    t0 = time.perf_counter()
    try:
        body = orjson.dumps(obj, default=_plain)
    except orjson.JSONEncodeError as e:
        raise ProtocolError(f"cannot encode the message as JSON: {e}") from None
    timings.record("wire", time.perf_counter() - t0)
    return _LEN.pack(len(body)) + body


def send_frame(sock: socket.socket, obj: Any) -> None:
    sock.sendall(encode(obj))


def recv_frame(sock: socket.socket, max_frame: int) -> Any:
    """One frame's JSON value. EOFError at a clean end of stream, ProtocolError for an oversized or
    malformed frame (the stream is then out of step: close the connection)."""
    (size,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if size > max_frame:
        raise ProtocolError(f"frame of {size} bytes is over the limit of {max_frame}")
    body = _recv_exact(sock, size)
    t0 = time.perf_counter()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"malformed frame: {e}") from None
    finally:
        timings.record("wire", time.perf_counter() - t0)


# ---- requests ----------------------------------------------------------------------------------

def request(rid: str, op: str, args: Any, deadline: float) -> dict[str, Any]:
    """The request frame for `op`, due by `deadline` (this process's `time.monotonic()`): it carries
    the time left, never an instant of a clock."""
    return {"id": rid, "op": op, "args": args, "protocol": PROTOCOL, "clarity": __version__,
            "budget": max(0.0, deadline - time.monotonic())}


@dataclass(frozen=True)
class Request:
    """A request as the receiver reads it. `deadline` is on the receiver's `time.monotonic()` clock
    (None: the sender set none)."""

    id: Any
    op: str
    args: dict[str, Any]
    protocol: int
    clarity: str | None
    deadline: float | None

    @property
    def sender(self) -> str:
        """The sender's Clarity version as far as it is known ("0.1.x" for protocol 1)."""
        return self.clarity or _RELEASES.get(self.protocol, "of an unknown version")


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_request(req: Any, received_at: float) -> Request:
    """Read a request frame that arrived at `received_at` (`time.monotonic()`); ProtocolError when it is
    malformed. A `budget` (seconds left) becomes `received_at + budget`; an older peer's `deadline` (a
    Unix time) becomes `received_at + (deadline - time.time())`: the one place the wall clock is read,
    because that is the only clock such a frame speaks."""
    if not isinstance(req, dict) or not isinstance(req.get("op"), str) or not isinstance(req.get("args", {}), dict):
        raise ProtocolError("malformed request")
    protocol = req.get("protocol", LEGACY_PROTOCOL)
    if isinstance(protocol, bool) or not isinstance(protocol, int) or protocol < 1:
        raise ProtocolError(f"malformed request: protocol {protocol!r}")
    clarity = req.get("clarity")
    deadline: float | None = None
    if "budget" in req:
        budget = _seconds(req["budget"])
        if budget is None:
            raise ProtocolError(f"malformed request: budget {req['budget']!r}")
        deadline = received_at + min(budget, MAX_BUDGET_S)
    elif req.get("deadline") is not None:
        unix = _seconds(req["deadline"])
        if unix is None:
            raise ProtocolError(f"malformed request: deadline {req['deadline']!r}")
        deadline = received_at + min(unix - time.time(), MAX_BUDGET_S)
    return Request(req.get("id"), req["op"], req.get("args") or {}, protocol,
                   clarity if isinstance(clarity, str) else None, deadline)


def version_mismatch(owner_clarity: Any, owner_pid: Any, owner_protocol: int, clarity: str,
                     protocol: int) -> VersionMismatch:
    """What a session says when the owner runs another protocol (the session is the one `clarity` and
    `protocol` describe). The same words on both sides: the owner sends them to an older peer, which
    shows them as they are; a session that finds an older owner in lease.json raises them."""
    owner = owner_clarity if isinstance(owner_clarity, str) and owner_clarity else \
        _RELEASES.get(owner_protocol, "of an unknown version")
    return VersionMismatch(
        f"the store is owned by Clarity {owner} (pid {owner_pid}, protocol {owner_protocol}); this session "
        f"is Clarity {clarity} (protocol {protocol}): restart the older sessions"
    )


def record_protocol(record: dict[str, Any]) -> int:
    """The protocol of the owner a lease record describes (a record without one: protocol 1)."""
    protocol = record.get("protocol", LEGACY_PROTOCOL)
    return protocol if isinstance(protocol, int) and not isinstance(protocol, bool) else LEGACY_PROTOCOL


# ---- replies -----------------------------------------------------------------------------------

def error_reply(rid: Any, err: ClarityError) -> dict[str, Any]:
    return {"id": rid, "ok": False, "error": err.to_wire()}


def unexpected_reply(rid: Any, op: str, e: BaseException) -> dict[str, Any]:
    return {"id": rid, "ok": False,
            "error": {"kind": "internal", "message": f"{op} failed in the owner: {type(e).__name__}: {e}"}}


def reply_frame(reply: dict[str, Any], op: str, max_frame: int) -> bytes:
    """The encoded reply, or, when it would pass `max_frame`, an error that says how to page."""
    try:
        frame = encode(reply)
    except ProtocolError as e:
        return encode(error_reply(reply.get("id"), e))
    if len(frame) - _LEN.size <= max_frame:
        return frame
    err = ReplyTooLarge(
        f"{op}: the answer is {len(frame) - _LEN.size} bytes, over the socket's frame limit of {max_frame} "
        f"bytes (coordination.max_frame_bytes); ask for less: a smaller `limit` with `offset` to page, "
        f"include_content=false, or fewer ids per call"
    )
    return encode(error_reply(reply.get("id"), err))
