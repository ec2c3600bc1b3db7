"""Frames on the owner's socket and the request/reply codec.

A frame is a 4-byte big-endian length and an orjson body, at most `max_frame` bytes of body.
Request `{"id", "op", "args", "deadline"}` (deadline: absolute Unix time, chosen by the caller);
reply `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error": {"kind", "message"}}`.
Every error, expected or not, travels as a readable `{kind, message}`, so a peer's caller sees the
same message the owner's own caller would.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import orjson

from clarity import timings
from clarity.errors import ClarityError, ProtocolError, ReplyTooLarge

_LEN = struct.Struct("!I")


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
