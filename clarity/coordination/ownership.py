"""Owning the engine: become owner, run operations as owner, heartbeat, hand off, step down.

Guarantees:
- The engine is only ever opened in a process that holds the lease (or when the engine is not
  exclusive, see coordinator.py). The model is loaded by the owner, and ahead of time by the hot
  standby (standby.py), which hands it to the service it builds when it takes over.
- `run()` takes the operation lock within the caller's deadline, then re-checks the deadline and
  that the lease is still ours (`Lease.still_held`) before it starts the operation: a call whose
  caller already gave up is never applied, and a process that lost the lease never applies another
  write. Once an operation has started it runs to its end (the engine cannot be interrupted midway).
- `step_down()` closes the engine and releases the lease under the operation lock, then stops the
  socket server outside it, so every forwarded operation that has run gets its reply, and the ones
  still queued are told "not owner" (their callers retry at the next owner). It joins its threads.
- `close()` ends the model warm-up and the heartbeat before it returns (a thread left inside
  onnxruntime while the interpreter exits aborts the process).

The hot standby (standby.py) waits in the kernel on the lease lock and calls `take_over` with the
lock it got: the same take-over code as `try_become_owner`, then it opens the engine at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clarity import timings
from clarity.config import Settings
from clarity.coordination import tickets
from clarity.coordination.batcher import Batcher
from clarity.coordination.lease import Lease
from clarity.coordination.owner_server import OwnerServer
from clarity.errors import CoordinationTimeout, EngineLocked, LeaseLost, NotOwner
from clarity.platform import locks

if TYPE_CHECKING:
    from clarity.encoders.dense import Embedder
    from clarity.memory.model import Args
    from clarity.memory.service import MemoryService

log = logging.getLogger(__name__)


class Ownership:
    def __init__(self, settings: Settings, socket_path: Path | None, *, warm_model: bool) -> None:
        self.settings = settings
        self.cfg = settings.coordination
        self.mode = self.cfg.mode
        self.socket_path = socket_path
        self.warm_model = warm_model
        self.lease = Lease(settings.coordination_dir)
        self.op_lock = threading.RLock()
        self.ticket: tickets.Ticket | None = None
        self.closed = False
        self._service: MemoryService | None = None
        self._svc_lock = threading.Lock()
        self._server: OwnerServer | None = None
        self._owner_since: float | None = None  # when this turn's first operation ended
        self._wake = threading.Event()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._warm_thread: threading.Thread | None = None
        self.embedder: Embedder | None = None  # preloaded by the hot standby
        self.is_standby = False  # this process holds standby.lock (set by standby.py)
        self.batcher = Batcher(self.op_lock, self.cfg.call_deadline_s)
        self.on_owner: Callable[[], None] | None = None  # called after this process took the lease

    @property
    def held(self) -> bool:
        return self.lease.held

    @property
    def service_if_built(self) -> MemoryService | None:
        return self._service

    def service(self, *, exclusive_engine: bool = True) -> MemoryService:
        with self._svc_lock:  # the model warm-up thread may ask at the same time
            if self._service is None:
                from clarity.memory.service import build_service

                block = (lambda: self.lease.exclusive(self.cfg.call_deadline_s)) if exclusive_engine else None
                self._service = build_service(self.settings, exclusive=block, embedder=self.embedder)
            return self._service

    # ---- taking the lease --------------------------------------------------------------------

    def try_become_owner(self, deadline: float) -> bool:
        if self.lease.held:
            return True
        if not self.op_lock.acquire(timeout=max(0.0, deadline - time.time())):
            return False
        try:
            return self._take(None)
        finally:
            self.op_lock.release()

    def take_over(self, locked: locks.FileLock) -> bool:
        """The hot standby got the lease lock (`locked`): become owner with it, bind the socket, then
        open the engine before the first call arrives (calls queue on the operation lock meanwhile).
        False (and `locked` released) when this process is closing or maintenance holds the store."""
        with self.op_lock:
            if self.closed:
                locked.close()
                return False
            if not self._take(locked):
                return False
            try:
                self.service().open_engine()
            except Exception:  # EngineLocked & co: the first operation reports it and its caller retries
                log.exception("standby: opening the engine after taking the lease failed")
            return True

    def _take(self, locked: locks.FileLock | None) -> bool:
        """Take the lease (with `locked` when given) and start serving; the operation lock is held."""
        if self.lease.held:
            if locked is not None:
                locked.close()
            return True
        if self.closed:
            if locked is not None:
                locked.close()
            return False
        sock = str(self.socket_path) if self.socket_path is not None else None
        if not self.lease.try_acquire(sock, self.mode, locked):
            return False
        self._owner_since = None
        self.drop_ticket()
        try:
            for what in tickets.cleanup_stale(self.lease.waiters_dir):
                log.info("lease: removed stale %s", what)
            if self.socket_path is not None:
                server = OwnerServer(self.socket_path, self.serve_forwarded, self.cfg.max_frame_bytes)
                server.start()
                self._server = server
        except BaseException:  # never an owner nobody can reach
            self.lease.release()
            raise
        if self.warm_model and self.mode != "handoff" and self._warm_thread is None:
            # load the model while the first operation opens the engine: a failover costs the
            # longer of the two, not their sum (handoff keeps the model between turns anyway)
            self._warm_thread = threading.Thread(target=self._warm, name="clarity-warm", daemon=True)
            self._warm_thread.start()
        if self._hb_thread is None:
            self._hb_thread = threading.Thread(target=self._heartbeat_loop, name="clarity-heartbeat",
                                               daemon=True)
            self._hb_thread.start()
        log.info("owner: pid %s holds the lease, epoch %s, mode %s", os.getpid(), self.lease.epoch, self.mode)
        if self.on_owner is not None:
            self.on_owner()
        return True

    def _warm(self) -> None:
        try:
            self.service().embedder.embed_one("warm up")
        except Exception:
            log.exception("loading the embedding model failed")

    # ---- running as owner --------------------------------------------------------------------

    def run(self, op: str, args: Args, deadline: float, *, forwarded: bool) -> dict[str, Any]:
        """Run `op` here as the owner; NotOwner / CoordinationTimeout mean nothing was applied. Stores
        go through the batcher (batcher.py): those queued while the owner is busy run together."""
        lost = False
        try:
            if op == "store":
                return self.batcher.submit(args, deadline, lambda: self._check(op, deadline), self._store_batch)
            t0 = time.perf_counter()
            if not self.op_lock.acquire(timeout=max(0.0, deadline - time.time())):
                raise CoordinationTimeout(f"{op}: the owner was busy with other operations until the caller's "
                                          f"deadline; nothing was applied")
            try:
                timings.record("queue_wait", time.perf_counter() - t0)
                self._check(op, deadline)
                try:
                    with timings.timed("execute"):
                        result = self.service().execute(op, args)
                except EngineLocked as e:
                    raise NotOwner(f"the engine is still open elsewhere: {e}") from None
                if self._owner_since is None:
                    self._owner_since = time.monotonic()
                return result
            finally:
                self.op_lock.release()
        except LeaseLost:
            lost = True
            raise
        finally:
            if lost:
                self.step_down("the lease file was removed or replaced")
            elif self._handoff_due():
                if forwarded:
                    self._wake.set()  # never step down on a connection thread: its reply is not sent yet
                else:
                    self.step_down("handing off to waiters")

    def _check(self, op: str, deadline: float) -> None:
        """Before an operation starts (operation lock held): the caller still waits, we still own."""
        if time.time() > deadline:
            raise CoordinationTimeout(f"{op}: the caller's deadline passed while the call waited for the "
                                      f"owner's operation lock; nothing was applied")
        if not self.lease.held:
            raise NotOwner("this process no longer owns the lease")
        if not self.lease.still_held():
            raise LeaseLost("this process lost the lease (its lock file was removed or replaced)")

    def _store_batch(self, batch: list[Args]) -> list[dict[str, Any] | BaseException]:
        try:
            out: list[dict[str, Any] | BaseException] = list(self.service().store_batch(batch))
        except EngineLocked as e:
            raise NotOwner(f"the engine is still open elsewhere: {e}") from None
        if self._owner_since is None:
            self._owner_since = time.monotonic()
        return out

    def serve_forwarded(self, op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        return self.run(op, args, deadline if deadline is not None else time.time() + self.cfg.call_deadline_s,
                        forwarded=True)

    def run_naive(self, op: str, args: Args) -> dict[str, Any]:
        """Benchmark baseline: open the engine, run, close (EngineLocked when another has it open)."""
        with self.op_lock:
            svc = self.service(exclusive_engine=False)  # no lease in naive mode: nothing to upgrade
            try:
                return svc.execute(op, args)
            finally:
                svc.close()

    # ---- handing off and stepping down -------------------------------------------------------

    def _handoff_due(self) -> bool:
        """Someone waits and this turn has lasted its quantum, counted from the end of the turn's
        first operation (so opening the engine does not eat the turn)."""
        if (not self.lease.held or self._owner_since is None
                or time.monotonic() - self._owner_since < self.cfg.handoff_quantum_s):
            return False
        return bool(tickets.live(self.lease.waiters_dir))

    def step_down(self, reason: str) -> None:
        with self.op_lock:
            if not self.lease.held:
                return
            log.info("owner: stepping down at epoch %s: %s", self.lease.epoch, reason)
            server, self._server = self._server, None
            try:
                if self._service is not None:
                    self._service.close()
            finally:
                self.lease.release()
        if server is not None:
            server.stop()  # outside the lock: queued calls get "not owner", finished ones their reply

    def _heartbeat_loop(self) -> None:
        """Refresh the record every `heartbeat_s`; look for waiters ten times as often (or at once when
        a forwarded operation asks), so an idle owner hands off promptly."""
        last_beat = 0.0
        while not self._hb_stop.is_set():
            self._wake.wait(min(0.1, self.cfg.heartbeat_s))
            self._wake.clear()
            if self._hb_stop.is_set():
                return
            try:
                if not self.lease.held:
                    continue
                if time.monotonic() - last_beat >= self.cfg.heartbeat_s:
                    last_beat = time.monotonic()
                    if not self.lease.heartbeat():
                        self.step_down("the lease file was removed or replaced")
                        continue
                if self._handoff_due():
                    self.step_down("handing off to waiters")
            except Exception:
                log.exception("heartbeat failed")

    # ---- tickets -----------------------------------------------------------------------------

    def add_ticket(self) -> tickets.Ticket:
        if self.ticket is None:
            self.ticket = tickets.add(self.lease.waiters_dir)
        return self.ticket

    def drop_ticket(self) -> None:
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            ticket.remove()

    def close(self) -> None:
        self.closed = True
        self._hb_stop.set()
        self._wake.set()
        if self._warm_thread is not None:
            self._warm_thread.join()  # bounded by one model load; it cannot be interrupted midway
        self.step_down("exiting")
        self.drop_ticket()
        if self._hb_thread is not None and self._hb_thread is not threading.current_thread():
            self._hb_thread.join(timeout=5)
