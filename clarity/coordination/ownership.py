"""Owning the engine: take the lease, serve the other processes, run operations as owner, step down.

Guarantees:
- The engine is only ever opened in a process that holds the lease (or when the engine is not
  exclusive, see coordinator.py): operations run here only through `run()`, after its checks, and the
  hot standby opens the engine only after `take_over` took the lease (service_host.py builds the
  service and holds the model, heartbeat.py keeps the lease alive and says when to hand off,
  waiter.py holds this process's waiter ticket, batcher.py groups the stores).
- Taking the lease happens under the operation lock, in this order: the lease (`Lease.try_acquire`),
  a new turn, this process's waiter ticket dropped, stale tickets removed, the socket server bound (if
  that fails the lease is released at once: never an owner nobody can reach), the model warm-up and
  the heartbeat started, then the take-over listeners run (`on_taking_lease`: the standby resigns).
- Every deadline here is a `time.monotonic()` instant of this process (a forwarded call's arrives so,
  owner_server.py turns the caller's time left into one): a wall-clock step changes no wait.
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
from clarity.coordination.heartbeat import Heartbeat
from clarity.coordination.lease import Lease
from clarity.coordination.owner_server import OwnerServer
from clarity.coordination.service_host import BuildService, ServiceHost
from clarity.coordination.waiter import Waiter
from clarity.errors import CoordinationTimeout, EngineLocked, LeaseLost, NotOwner
from clarity.memory.batch_store import store_text
from clarity.platform import locks

if TYPE_CHECKING:
    from clarity.encoders.dense import Embedder
    from clarity.memory.model import Args

log = logging.getLogger(__name__)


class Ownership:
    """This process's side of the lease. Thread-safe; writes only its own fields (the parts it is
    made of are told through their methods)."""

    def __init__(self, settings: Settings, socket_path: Path | None, *, warm_model: bool,
                 build: BuildService | None = None, new_embedder: Callable[[], Embedder] | None = None) -> None:
        """`socket_path`: where to serve the other processes while owner (None: serve nobody).
        `build`, `new_embedder`: how the service and the model are made (service_host.py)."""
        self.settings = settings
        self.cfg = settings.coordination
        self.mode = self.cfg.mode
        self.socket_path = socket_path
        self.lease = Lease(settings.coordination_dir)
        self.op_lock = threading.RLock()
        self.services = ServiceHost(settings, self.lease, warm_model=warm_model, build=build,
                                    new_embedder=new_embedder)
        self.waiter = Waiter(self.lease.waiters_dir)
        self.heartbeat = Heartbeat(self.lease, self.cfg, self.step_down)
        self.batcher = Batcher(self.op_lock, self.cfg.call_deadline_s)
        self._closed = False
        self._server: OwnerServer | None = None
        self._on_take: list[Callable[[], None]] = []

    @property
    def held(self) -> bool:
        return self.lease.held

    @property
    def closed(self) -> bool:
        """`close()` was called: this process never takes the lease again."""
        return self._closed

    def on_taking_lease(self, listener: Callable[[], None]) -> None:
        """Call `listener` (under the operation lock) each time this process has taken the lease."""
        self._on_take.append(listener)

    # ---- taking the lease --------------------------------------------------------------------

    def try_become_owner(self, deadline: float) -> bool:
        if self.lease.held:
            return True
        if not self.op_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
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
            if self._closed:
                locked.close()
                return False
            if not self._take(locked):
                return False
            try:
                self.services.service().open_engine()
            except Exception:  # EngineLocked & co: the first operation reports it and its caller retries
                log.exception("standby: opening the engine after taking the lease failed")
            return True

    def _take(self, locked: locks.FileLock | None) -> bool:
        """Take the lease (with `locked` when given) and start serving; the operation lock is held."""
        if self.lease.held:
            if locked is not None:
                locked.close()
            return True
        if self._closed:
            if locked is not None:
                locked.close()
            return False
        sock = str(self.socket_path) if self.socket_path is not None else None
        if not self.lease.try_acquire(sock, self.mode, locked):
            return False
        self.heartbeat.new_turn()
        self.waiter.drop()
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
        self.services.start_warmup()
        self.heartbeat.start()
        log.info("owner: pid %s holds the lease, epoch %s, mode %s", os.getpid(), self.lease.epoch, self.mode)
        for listener in self._on_take:
            listener()
        return True

    # ---- running as owner --------------------------------------------------------------------

    def run(self, op: str, args: Args, deadline: float, *, forwarded: bool) -> dict[str, Any]:
        """Run `op` here as the owner; NotOwner / CoordinationTimeout mean nothing was applied. Stores
        go through the batcher (batcher.py): those queued while the owner is busy run together."""
        lost = False
        try:
            if op == "store":
                return self.batcher.submit(args, deadline, lambda: self._check(op, deadline), self._store_batch,
                                           self._embed_early)
            t0 = time.perf_counter()
            if not self.op_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise CoordinationTimeout(f"{op}: the owner was busy with other operations until the caller's "
                                          f"deadline; nothing was applied")
            try:
                timings.record("queue_wait", time.perf_counter() - t0)
                self._check(op, deadline)
                try:
                    with timings.timed("execute"):
                        result = self.services.service().execute(op, args)
                except EngineLocked as e:
                    raise NotOwner(f"the engine is still open elsewhere: {e}") from None
                self.heartbeat.operation_done()
                return result
            finally:
                self.op_lock.release()
        except LeaseLost:
            lost = True
            raise
        finally:
            if lost:
                self.step_down("the lease file was removed or replaced")
            elif self.heartbeat.handoff_due():
                if forwarded:
                    self.heartbeat.wake()  # never step down on a connection thread: its reply is not sent yet
                else:
                    self.step_down("handing off to waiters")

    def _check(self, op: str, deadline: float) -> None:
        """Before an operation starts (operation lock held): the caller still waits, we still own."""
        if time.monotonic() > deadline:
            raise CoordinationTimeout(f"{op}: the caller's deadline passed while the call waited for the "
                                      f"owner's operation lock; nothing was applied")
        if not self.lease.held:
            raise NotOwner("this process no longer owns the lease")
        if not self.lease.still_held():
            raise LeaseLost("this process lost the lease (its lock file was removed or replaced)")

    def _embed_early(self, args: Args) -> None:
        """A store queued behind a batch: start embedding its text now (see `Embedder.start_early`)."""
        svc, text = self.services.built, store_text(args)
        if svc is not None and text is not None:
            svc.embedder.start_early(text)  # does nothing while the model is not loaded

    def _store_batch(self, batch: list[Args]) -> list[dict[str, Any] | BaseException]:
        try:
            out: list[dict[str, Any] | BaseException] = list(self.services.service().store_batch(batch))
        except EngineLocked as e:
            raise NotOwner(f"the engine is still open elsewhere: {e}") from None
        self.heartbeat.operation_done()
        return out

    def serve_forwarded(self, op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        return self.run(op, args, deadline if deadline is not None else time.monotonic() + self.cfg.call_deadline_s,
                        forwarded=True)

    # ---- stepping down -----------------------------------------------------------------------

    def step_down(self, reason: str) -> None:
        with self.op_lock:
            if not self.lease.held:
                return
            log.info("owner: stepping down at epoch %s: %s", self.lease.epoch, reason)
            server, self._server = self._server, None
            try:
                self.services.close_engine()
            finally:
                self.lease.release()
        if server is not None:
            server.stop()  # outside the lock: queued calls get "not owner", finished ones their reply

    def close(self) -> None:
        self._closed = True
        self.heartbeat.stop()
        self.services.finish_loading()  # bounded by one model load; it cannot be interrupted midway
        self.step_down("exiting")
        self.waiter.drop()
        self.heartbeat.join()
