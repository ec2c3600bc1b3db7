"""The forwarding client: sends one operation to the owner's socket and waits for its reply.

Guarantees:
- Before sending anything it checks who listens (SO_PEERCRED): a socket served by another uid is
  refused with UnsafeStore, and not one byte goes to it.
- Every wait is bounded by the call's deadline, a `time.monotonic()` instant of this process: the
  connection lock, connect(), send and receive. The frame carries the time left (`wire.request`), not
  an instant, so the owner's clock and a step of either wall clock change nothing.
- Before sending anything on a new connection it checks the owner's protocol (`owner_record`: the
  lease record, lease.py, read after connecting, so it names the process listening there or a later
  owner, in which case the one listening has let go and answers "not owner"): an owner of another
  protocol (another Clarity version) is refused with `VersionMismatch`, naming both versions, and
  not one byte goes to it (logged once per owner). Not retryable: it lasts until the older sessions
  are restarted; once that owner is gone the next call connects to the next one and checks again.
- After any send or receive error the connection is dropped (the stream may be out of step); the next
  call opens a fresh one. A connection the owner closed while idle is noticed before sending.
- What a failure means for the operation: `NotSent` (nothing reached the owner), `OwnerGone` (refused,
  or closed before replying: the operation may or may not have run; the caller retries with the same
  ids, which is idempotent), `OwnerTimeout` (sent, no reply by the deadline: outcome unknown).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clarity import __version__, timings
from clarity.coordination import wire
from clarity.errors import NotOwner, NotSent, OwnerGone, OwnerTimeout, ProtocolError, UnsafeStore, from_wire
from clarity.platform import files, peers

if TYPE_CHECKING:
    from clarity.memory.model import Args

log = logging.getLogger(__name__)


class PeerClient:
    """One persistent connection to the owner, one request at a time. Thread-safe."""

    def __init__(self, path: Path, max_frame: int,
                 owner_record: Callable[[], dict[str, Any] | None] | None = None) -> None:
        """`owner_record`: reads the lease record (`Lease.read_record`), to check the owner's protocol
        before sending (None: no check, e.g. a server with no lease in a test)."""
        self.path = path
        self.max_frame = max_frame
        self._owner_record = owner_record
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned: set[tuple[Any, Any]] = set()  # (pid, epoch) of owners whose version was logged

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _stale(self, sock: socket.socket) -> bool:
        """The owner closed this idle connection (or sent something unasked): do not reuse it."""
        try:
            sock.settimeout(0.0)  # in timeout mode Python would first wait for readability
            sock.recv(1, socket.MSG_PEEK)
            return True  # end of stream (b"") or bytes nobody asked for
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None and self._stale(self._sock):
            self._drop()
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                s.connect(str(self.path))
            except (TimeoutError, BlockingIOError) as e:  # EAGAIN: its backlog is full, it is not accepting
                s.close()
                raise NotSent(f"connect {self.path}: the owner did not accept the connection") from e
            except OSError as e:
                s.close()
                raise OwnerGone(f"connect {self.path}: {errno.errorcode.get(e.errno or 0, e)}") from e
            pid, uid = peers.peer_credentials(s)
            if uid != os.getuid():
                s.close()
                raise UnsafeStore(
                    f"refusing to forward to {self.path}: it is served by {files.who(uid)} (pid {pid}), not by "
                    f"you ({files.who(os.getuid())}); nothing was sent. Another user controls this store's "
                    f"socket: remove {self.path} and check who owns the store's folders."
                )
            try:
                self._check_version()
            except BaseException:
                s.close()
                raise
            self._sock = s
        return self._sock

    def _check_version(self) -> None:
        """VersionMismatch when the lease record names an owner of another protocol (see the module
        docstring). A missing or unreadable record decides nothing: an owner of protocol 2 or later
        checks the frame itself, and one of protocol 1 always wrote its record before listening. Nor
        does a record stamped released: its owner is stepping down, and every version answers "not
        owner" then, before it reads the arguments, so the caller retries at the next owner."""
        record = self._owner_record() if self._owner_record is not None else None
        if record is None or record.get("released_at") is not None:
            return  # a released record: the one listening is stepping down, and answers "not owner"
        protocol = wire.record_protocol(record)
        if protocol == wire.PROTOCOL:
            return
        err = wire.version_mismatch(record.get("version"), record.get("pid"), protocol, __version__, wire.PROTOCOL)
        key = (record.get("pid"), record.get("epoch"))
        if key not in self._warned:
            self._warned.add(key)
            log.info("%s; nothing was sent", err.message)
        raise err

    def request(self, op: str, args: Args, deadline: float) -> dict[str, Any]:
        """Run `op` at the owner by `deadline` (`time.monotonic()`). Raises the owner's ClarityError,
        VersionMismatch, or NotSent / OwnerGone / OwnerTimeout (see the module docstring)."""
        rid = uuid.uuid4().hex
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise NotSent("another call of this process held the connection until the deadline")
        try:
            sock = self._connect(deadline)
            if time.monotonic() >= deadline:
                raise NotSent("the deadline passed before the request could be sent")
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                t0 = time.perf_counter()
                wire.send_frame(sock, wire.request(rid, op, args, deadline))
                reply = wire.recv_frame(sock, self.max_frame)
                timings.record("forward", time.perf_counter() - t0)
            except TimeoutError as e:
                self._drop()
                raise OwnerTimeout(str(e) or "timed out") from e
            except (EOFError, OSError) as e:
                self._drop()
                raise OwnerGone(f"{type(e).__name__}: {e}") from e
            except BaseException:
                self._drop()
                raise
            if not isinstance(reply, dict) or reply.get("id") not in (rid, None):
                self._drop()
                raise ProtocolError(f"unexpected reply from owner: {str(reply)[:200]}")
        finally:
            self._lock.release()
        if reply.get("ok"):
            result = reply.get("result")
            return result if isinstance(result, dict) else {}
        error = from_wire(reply.get("error") or {})
        if isinstance(error, NotOwner):  # it stepped down meanwhile: nothing was applied there
            self.close()
            raise OwnerGone(error.message)
        raise error
