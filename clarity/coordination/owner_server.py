"""The owner's Unix-socket endpoint: serves forwarded operations, one thread per connection.

Guarantees:
- The socket is mode 0600 in a private folder (the coordination folder, or `socket_path_for`'s runtime
  folder); a peer of another uid (SO_PEERCRED) is refused before a byte is read.
- Every request gets exactly one reply frame of at most `max_frame` bytes: a larger answer is replaced
  by a `reply_too_large` error saying how to page; an unexpected exception becomes a readable
  `{kind: "internal", message}` error and the server keeps serving.
- The handler receives the caller's deadline, on this process's `time.monotonic()` clock (the frame
  carries the caller's time left, `wire.parse_request`), and re-checks it after taking the operation
  lock, so an operation whose caller gave up before it could start is never applied (see
  coordinator.py). No wall-clock instant is compared here: a clock step changes no wait.
- A caller that gave up closes its connection (peer_client.py); a request read after that (the owner
  was stopped or starved between the send and the read, so the time left it carried was already
  spent) is answered "nothing was applied" and never run. Not guaranteed: that a stall between
  the send and the read while the caller still waits is counted: the deadline then ends that much
  after the caller's (the caller reports an unknown outcome, coordinator.py).
- A request of another protocol than `wire.PROTOCOL` (an older or newer Clarity; a frame without a
  protocol is protocol 1) runs nothing: it is answered with a `version_mismatch` error naming this
  owner's Clarity version, pid and protocol and the sender's, in the reply format every version reads
  (`{"id", "ok": false, "error": {"kind", "message"}}`), and the connection stays open. Logged once
  per sender version.
- `stop()` stops accepting, sends every reply whose operation has run (bounded wait), then closes
  every connection and joins every thread it started. It must not be called with the operation lock
  held, nor from a connection thread.
- An idle connection (no request for `idle_timeout_s`) is closed; the client reconnects.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clarity import __version__
from clarity.config import xdg_runtime_dir
from clarity.coordination import wire
from clarity.errors import ClarityError, CoordinationTimeout, ProtocolError
from clarity.layout import CoordinationFiles
from clarity.platform import files, peers

log = logging.getLogger(__name__)

SUN_PATH_MAX = 104  # the smallest limit among the platforms we care about (macOS); Linux allows 108

Handler = Callable[[str, dict[str, Any], float | None], dict[str, Any]]
"""`handler(op, args, deadline)`: `deadline` on this process's `time.monotonic()` clock, None when the
caller set none."""


def runtime_dir() -> Path:
    """A private per-user folder for sockets whose natural path is too long: `$XDG_RUNTIME_DIR/clarity`
    when XDG_RUNTIME_DIR is set, else `<tmp>/clarity-<uid>`. Created 0700; a folder there that another
    user owns, or that is loose or a link, is an error naming it (never a silent fallback)."""
    xdg = xdg_runtime_dir()
    if xdg is not None:
        files.check_private_dir(xdg, "XDG_RUNTIME_DIR")
        folder = xdg / "clarity"
    else:
        folder = Path(tempfile.gettempdir()) / f"clarity-{os.getuid()}"
    files.ensure_private_dir(folder, "socket folder")
    return folder


def socket_path_for(coord_dir: Path) -> Path:
    """`owner.sock` in the coordination folder, or a hashed name in `runtime_dir()` when that path
    would pass the platform's limit."""
    real = coord_dir.resolve()
    path = CoordinationFiles(real).owner_socket
    if len(os.fsencode(path)) < SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    return runtime_dir() / f"{digest}.sock"


def _hung_up(conn: socket.socket) -> bool:
    """The peer closed its side (end of stream after the request just read): its caller gave up. Never
    waits (the caller sets the connection's timeout again before its next wait)."""
    try:
        conn.settimeout(0.0)  # in timeout mode Python would first wait for readability
        return conn.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # nothing more to read: the caller still waits
    except OSError:
        return True


class OwnerServer:
    def __init__(self, path: Path, handler: Handler, max_frame: int, idle_timeout_s: float = 300.0,
                 drain_s: float = 10.0) -> None:
        self.path = path
        self.handler = handler
        self.max_frame = max_frame
        self.idle_timeout_s = idle_timeout_s
        self.drain_s = drain_s
        self._listener: socket.socket | None = None
        self._ino: int | None = None
        self._stopping = False
        self._cv = threading.Condition()
        self._busy: dict[socket.socket, bool] = {}  # connection -> an operation has been read, no reply sent yet
        self._threads: list[threading.Thread] = []
        self._mismatched: set[tuple[int, str]] = set()  # sender (protocol, version) already logged

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if not stat.S_ISSOCK(st.st_mode):
                log.warning("owner: removing %s before binding", files.describe(self.path, st))
            os.unlink(self.path)  # a leftover of a dead owner (or a planted file): we hold the lease now
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)  # bound by us a moment ago in a private folder
        self._ino = os.lstat(self.path).st_ino
        s.listen(128)
        self._listener = s
        self._spawn(self._accept_loop, "clarity-owner-accept")

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._cv:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            pid, uid = peers.peer_credentials(conn)
            if uid != os.getuid():
                log.warning("owner: refused a peer of uid %s (pid %s)", uid, pid)
                conn.close()
                continue
            with self._cv:
                if self._stopping:
                    conn.close()
                    return
                self._busy[conn] = False
            self._spawn(self._serve, f"clarity-peer-{pid}", conn)

    def _set_busy(self, conn: socket.socket, busy: bool) -> None:
        with self._cv:
            if conn in self._busy:
                self._busy[conn] = busy
            self._cv.notify_all()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stopping:
                conn.settimeout(self.idle_timeout_s)
                try:
                    req = wire.recv_frame(conn, self.max_frame)
                except ProtocolError as e:
                    with contextlib.suppress(OSError):
                        wire.send_frame(conn, wire.error_reply(None, e))
                    return
                except (TimeoutError, EOFError, OSError):
                    return  # idle too long, peer gone, or we are stopping
                self._set_busy(conn, True)
                op = str(req.get("op")) if isinstance(req, dict) else "request"
                frame = wire.reply_frame(self._answer(req, lambda: _hung_up(conn)), op, self.max_frame)
                conn.settimeout(self.drain_s)  # a peer that does not read cannot hold us forever
                try:
                    conn.sendall(frame)
                except OSError:
                    return
                finally:
                    self._set_busy(conn, False)
        finally:
            with self._cv:
                self._busy.pop(conn, None)
                self._cv.notify_all()
            conn.close()

    def _answer(self, req: Any, hung_up: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        received_at = time.monotonic()
        rid = req.get("id") if isinstance(req, dict) else None
        try:
            r = wire.parse_request(req, received_at)
        except ProtocolError as e:
            return wire.error_reply(rid, e)
        if r.protocol != wire.PROTOCOL:
            return wire.error_reply(r.id, self._mismatch(r))
        if r.deadline is not None and time.monotonic() > r.deadline:
            return wire.error_reply(r.id, CoordinationTimeout(
                "the caller's deadline passed before the owner could start the call; nothing was applied"))
        if hung_up():
            return wire.error_reply(r.id, CoordinationTimeout(
                "the caller gave up (it closed its connection) before the owner could start the call; nothing "
                "was applied"))
        try:
            return {"id": r.id, "ok": True, "result": self.handler(r.op, r.args, r.deadline)}
        except ClarityError as e:
            return wire.error_reply(r.id, e)
        except Exception as e:  # reported to the caller, never kills the server
            log.exception("owner: %s failed", r.op)
            return wire.unexpected_reply(r.id, r.op, e)

    def _mismatch(self, r: wire.Request) -> ClarityError:
        """The error a sender of another protocol gets (nothing is run), worded for that sender."""
        err = wire.version_mismatch(__version__, os.getpid(), wire.PROTOCOL, r.sender, r.protocol)
        with self._cv:
            first = (r.protocol, r.sender) not in self._mismatched
            self._mismatched.add((r.protocol, r.sender))
        if first:
            log.warning("owner: refused a request of Clarity %s (protocol %s): %s", r.sender, r.protocol, err.message)
        return err

    def stop(self) -> None:
        """Stop accepting, remove our socket file, send pending replies, close, join."""
        self._stopping = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept(); close() alone does not
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._ino:  # never a socket a later owner bound there
                os.unlink(self.path)
        end = time.monotonic() + self.drain_s
        with self._cv:
            for c in [c for c, busy in self._busy.items() if not busy]:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)  # idle: wake its recv
            while any(self._busy.values()) and time.monotonic() < end:
                self._cv.wait(max(0.0, end - time.monotonic()))
            conns, threads = list(self._busy), list(self._threads)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join(timeout=max(0.1, end - time.monotonic()))
