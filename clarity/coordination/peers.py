"""The owner's Unix-socket endpoint and the client that forwards operations to it.

Wire format: each frame is a 4-byte big-endian length and an orjson body.
Request `{"id", "op", "args", "deadline"}` (deadline: absolute Unix time); reply `{"id", "ok": true,
"result"}` or `{"id", "ok": false, "error": {"kind", "message"}}`. Frames over `max_frame` bytes are
refused. The socket is mode 0600 in a 0700 folder and the owner refuses peers of another uid
(SO_PEERCRED).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from clarity.errors import ClarityError, ProtocolError, from_wire

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")
SUN_PATH_MAX = 104  # the smallest limit among the platforms we care about (macOS); Linux allows 108


class OwnerGone(Exception):
    """The owner's socket refused, reset or closed the connection: there may be no owner."""


class OwnerTimeout(Exception):
    """The owner accepted the request but did not answer before its deadline."""


def socket_path_for(coord_dir: Path) -> Path:
    """`owner.sock` in the coordination folder, or a hashed name in a private temp folder when that
    path would pass the platform's limit."""
    real = coord_dir.resolve()
    path = real / "owner.sock"
    if len(os.fsencode(path)) < SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"clarity-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder / f"{digest}.sock"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def send_frame(sock: socket.socket, obj: Any) -> None:
    body = orjson.dumps(obj)
    sock.sendall(_LEN.pack(len(body)) + body)


def recv_frame(sock: socket.socket, max_frame: int) -> Any:
    (size,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if size > max_frame:
        raise ProtocolError(f"frame of {size} bytes is over the limit of {max_frame}")
    return orjson.loads(_recv_exact(sock, size))


Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class OwnerServer:
    """Serves forwarded operations on a Unix socket, one thread per connection."""

    def __init__(self, path: Path, handler: Handler, max_frame: int) -> None:
        self.path = path
        self.handler = handler
        self.max_frame = max_frame
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = False
        self._ino: int | None = None
        self._accept_thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # a leftover of a dead owner: we hold the lease now
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._ino = os.stat(self.path).st_ino
        s.listen(128)
        self._listener = s
        self._accept_thread = threading.Thread(target=self._accept_loop, name="clarity-owner-accept", daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.getuid():
                log.warning("refused a peer of uid %s (pid %s)", uid, pid)
                conn.close()
                continue
            with self._conns_lock:
                if self._stopping:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"clarity-peer-{pid}", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                try:
                    req = recv_frame(conn, self.max_frame)
                except ProtocolError as e:
                    with contextlib.suppress(OSError):
                        send_frame(conn, {"id": None, "ok": False, "error": e.to_wire()})
                    return
                except (EOFError, OSError, orjson.JSONDecodeError, struct.error):
                    return
                send_frame(conn, self._answer(req))
        except OSError:
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            conn.close()

    def _answer(self, req: Any) -> dict[str, Any]:
        rid = req.get("id") if isinstance(req, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            return {"id": rid, "ok": False, "error": ProtocolError("malformed request").to_wire()}
        deadline = req.get("deadline")
        if isinstance(deadline, int | float) and time.time() > deadline:
            err = ClarityError("the caller's deadline passed before the owner could run it")
            return {"id": rid, "ok": False, "error": {"kind": "coordination_timeout", "message": err.message}}
        try:
            return {"id": rid, "ok": True, "result": self.handler(req["op"], req.get("args") or {})}
        except ClarityError as e:
            return {"id": rid, "ok": False, "error": e.to_wire()}
        except Exception as e:  # reported to the caller, never kills the server
            log.exception("owner: %s failed", req.get("op"))
            return {"id": rid, "ok": False, "error": {"kind": "internal", "message": f"{type(e).__name__}: {e}"}}

    def stop(self) -> None:
        """Stop accepting, remove the socket file, close every connection. Call it only when no
        request is being run (the coordinator holds its operation lock)."""
        self._stopping = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept(); close() alone does not
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout=5)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._ino:  # never a socket a later owner bound there
                self.path.unlink()
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class PeerClient:
    """Forwards operations to the owner over one persistent connection. Thread-safe (one request at
    a time on the connection)."""

    def __init__(self, path: Path, max_frame: int) -> None:
        self.path = path
        self.max_frame = max_frame
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.path))
            except OSError as e:
                s.close()
                raise OwnerGone(f"connect {self.path}: {errno.errorcode.get(e.errno or 0, e)}") from e
            self._sock = s
        return self._sock

    def request(self, op: str, args: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Run `op` at the owner. Raises the owner's ClarityError, OwnerGone (retry elsewhere),
        or OwnerTimeout (accepted but no answer by `deadline`)."""
        rid = uuid.uuid4().hex
        body = {"id": rid, "op": op, "args": args, "deadline": deadline}
        with self._lock:
            sock = self._connect()
            try:
                sock.settimeout(max(0.001, deadline - time.time()))
                send_frame(sock, body)
                reply = recv_frame(sock, self.max_frame)
            except TimeoutError as e:
                self._drop()
                raise OwnerTimeout(str(e)) from e
            except (EOFError, ConnectionError, BrokenPipeError) as e:
                self._drop()
                raise OwnerGone(f"{type(e).__name__}: {e}") from e
            except OSError as e:
                self._drop()
                raise OwnerGone(f"{type(e).__name__}: {e}") from e
        if not isinstance(reply, dict) or reply.get("id") not in (rid, None):
            self.close()
            raise ProtocolError(f"unexpected reply from owner: {str(reply)[:200]}")
        if reply.get("ok"):
            result: dict[str, Any] = reply.get("result") or {}
            return result
        error = reply.get("error") or {}
        if error.get("kind") == "not_owner":
            self.close()
            raise OwnerGone(str(error.get("message")))
        raise from_wire(error)
