"""Runs each operation here (owner), at the owner (forward), or after this process's turn (handoff).

Forward mode (default): a process that does not own the lease sends the operation to the owner's socket.
When nobody answers (refused, reset, end of stream) it takes the lease itself (one process wins, the
others forward to it) and runs the call here. When the lease is held but the socket cannot be reached
for more than `_TICKET_AFTER_S`, it falls back to handoff: it leaves a waiter ticket so the owner
releases. Handoff mode: every process takes turns; the owner releases after each operation (or from its
heartbeat) once it has held the lease for `handoff_quantum_s` and a waiter is queued, waiters take the
lease in ticket order.

Guarantees: a call returns the owner's answer or raises a ClarityError; transient failures are retried
with tenacity (exponential backoff with jitter, capped) until the call's deadline, then a
CoordinationTimeout names the owner, its epoch and what was tried; a forwarded call the owner accepted
but did not answer by the deadline raises OwnerUnresponsive. Callers choose write ids before calling,
so a retry after an owner died is an idempotent upsert. Not guaranteed: that an `update` retried after
the owner died mid-call keeps its first `updated_at`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from clarity.config import Settings
from clarity.coordination.lease import Lease, Ticket
from clarity.coordination.locks import holder_pid
from clarity.coordination.peers import OwnerGone, OwnerServer, OwnerTimeout, PeerClient, socket_path_for
from clarity.engines.base import EngineLocked
from clarity.errors import ClarityError, CoordinationTimeout, OwnerUnresponsive

if TYPE_CHECKING:
    from clarity.memory.service import MemoryService

log = logging.getLogger(__name__)

_TICKET_AFTER_S = 1.0


class _Retry(Exception):
    """Transient: try again after a backoff."""


class NotOwner(ClarityError):
    kind = "not_owner"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class Coordinator:
    def __init__(self, settings: Settings, *, observer: bool = False, warm_model: bool = False) -> None:
        """`warm_model`: a long-lived server loads the model in the background as soon as it takes the
        lease; a one-shot command never does (it loads only what its one operation uses)."""
        self.settings = settings
        self.warm_model = warm_model
        self._warm_thread: threading.Thread | None = None
        self.cfg = settings.coordination
        self.mode = self.cfg.mode
        self.observer = observer
        self.lease = Lease(settings.coordination_dir)
        self.socket_path = socket_path_for(settings.coordination_dir)
        self.peer = PeerClient(self.socket_path, self.cfg.max_frame_bytes)
        self._service: MemoryService | None = None
        self._server: OwnerServer | None = None
        self._ticket: Ticket | None = None
        self._op_lock = threading.RLock()
        self._svc_lock = threading.Lock()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._owner_since: float | None = None  # when this turn's first operation ended
        self._closed = False

    # ---- the memory service (only ever built in a process that owns the lease) --------------

    def _svc(self) -> MemoryService:
        with self._svc_lock:  # the model warm-up thread may ask at the same time
            if self._service is None:
                from clarity.memory.service import build_service

                self._service = build_service(self.settings)
            return self._service

    @property
    def role(self) -> str:
        if self.observer:
            return "observer"
        if self.lease.held:
            return "owner"
        if self._ticket is not None:
            return "waiter"
        return "peer" if self.mode == "forward" else "idle"

    # ---- calls -------------------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `op(args)` wherever it can run now; see the module docstring for what is guaranteed."""
        if self._closed:
            raise ClarityError("this Clarity process is shutting down")
        unreachable: list[float] = []  # when the owner's socket was first found unreachable in this call
        deadline = time.time() + self.cfg.call_deadline_s
        tried: list[str] = []
        retrying = Retrying(
            stop=stop_after_delay(self.cfg.call_deadline_s),
            wait=wait_random_exponential(multiplier=0.01, max=0.25),
            retry=retry_if_exception_type(_Retry),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(op, args, deadline, unreachable, tried)
        except RetryError:
            raise self._timeout_error(op, tried) from None
        finally:
            if self._ticket is not None and not self.lease.held:
                self._drop_ticket()
        raise AssertionError("unreachable")

    def _attempt(self, op: str, args: dict[str, Any], deadline: float, unreachable: list[float],
                 tried: list[str]) -> dict[str, Any]:
        if time.time() >= deadline:
            raise _Retry()
        if self.mode == "naive":
            return self._run_naive(op, args, tried)
        if self.lease.held:
            return self._run_owned(op, args, tried)
        if self.mode == "forward":
            try:
                return self.peer.request(op, args, deadline)
            except OwnerGone as e:
                tried.append(f"forward: {e}")
            except OwnerTimeout:
                raise self._unresponsive_error(op) from None
            if self._become_owner():
                return self._run_owned(op, args, tried)
            tried.append("take lease: held by another process")
            # only a socket that stays unreachable while its lease is held calls for a handoff; a new
            # owner binds its socket a moment after taking the lease, and must not be asked to leave
            if not unreachable:
                unreachable.append(time.monotonic())
            if self._ticket is None and time.monotonic() - unreachable[0] > _TICKET_AFTER_S:
                self._ticket = self.lease.add_ticket()
                log.info("owner's socket unreachable while its lease is held; waiting for a handoff")
            raise _Retry()
        if self._ticket is None:
            self._ticket = self.lease.add_ticket()
        ahead = [t for t in self.lease.live_tickets(exclude=self._ticket.path)
                 if t["ticket"] < self._ticket.path.name]
        if not ahead and self._become_owner():
            return self._run_owned(op, args, tried)
        tried.append(f"handoff: {len(ahead)} waiter(s) ahead" if ahead else "handoff: lease held")
        raise _Retry()

    def _run_owned(self, op: str, args: dict[str, Any], tried: list[str]) -> dict[str, Any]:
        with self._op_lock:
            if not self.lease.held:
                raise _Retry()
            try:
                return self._svc().execute(op, args)
            except EngineLocked as e:
                tried.append(f"open engine: {e}")
                raise _Retry() from None
            finally:
                self._maybe_handoff(after_op=True)

    def _run_naive(self, op: str, args: dict[str, Any], tried: list[str]) -> dict[str, Any]:
        """Benchmark baseline: open the engine, run, close; retry while another process has it."""
        with self._op_lock:
            svc = self._svc()
            try:
                return svc.execute(op, args)
            except EngineLocked:
                tried.append("open engine: held by another process")
                raise _Retry() from None
            finally:
                svc.close()

    def _serve_forwarded(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._op_lock:
            if not self.lease.held:
                raise NotOwner("this process no longer owns the lease")
            try:
                return self._svc().execute(op, args)
            except EngineLocked as e:
                raise NotOwner(f"the engine is still open elsewhere: {e}") from None
            finally:
                self._maybe_handoff(after_op=True)

    # ---- ownership ---------------------------------------------------------------------------

    def _become_owner(self) -> bool:
        with self._op_lock:
            if self.lease.held:
                return True
            if self._closed:
                return False
            sock = str(self.socket_path) if self.mode == "forward" else None
            if not self.lease.try_acquire(sock, self.mode):
                return False
            self._owner_since = None
            self._drop_ticket()
            self.peer.close()
            if self.mode == "forward":
                self._server = OwnerServer(self.socket_path, self._serve_forwarded, self.cfg.max_frame_bytes)
                try:
                    self._server.start()
                except OSError:
                    self._server = None
                    self.lease.release()
                    raise
            if self.warm_model and self.mode != "handoff" and self._warm_thread is None:
                # load the model while the first operation opens the engine: a failover costs the longer
                # of the two, not their sum (handoff keeps the model between turns anyway)
                self._warm_thread = threading.Thread(target=self._warm_model, name="clarity-warm", daemon=True)
                self._warm_thread.start()
            if self._hb_thread is None:
                self._hb_thread = threading.Thread(target=self._heartbeat_loop, name="clarity-heartbeat",
                                                   daemon=True)
                self._hb_thread.start()
            log.info("owner: pid %s holds the lease, epoch %s, mode %s", os.getpid(), self.lease.epoch, self.mode)
            return True

    def _warm_model(self) -> None:
        try:
            self._svc().embedder.embed_one("warm up")
        except Exception:
            log.exception("loading the embedding model failed")

    def _maybe_handoff(self, after_op: bool = False) -> None:
        """Step down when someone waits and this turn has lasted its quantum, counted from the end of
        the turn's first operation (so opening the engine does not eat the turn)."""
        if after_op and self._owner_since is None:
            self._owner_since = time.monotonic()
        if (not self.lease.held or self._owner_since is None
                or time.monotonic() - self._owner_since < self.cfg.handoff_quantum_s):
            return
        waiters = self.lease.live_tickets()
        if waiters:
            self._step_down(f"handing off to {len(waiters)} waiter(s)")

    def _step_down(self, reason: str) -> None:
        with self._op_lock:
            if not self.lease.held:
                return
            log.info("owner: stepping down at epoch %s: %s", self.lease.epoch, reason)
            if self._server is not None:
                self._server.stop()
                self._server = None
            try:
                if self._service is not None:
                    self._service.close()
            finally:
                self.lease.release()

    def _heartbeat_loop(self) -> None:
        """Refresh the record every `heartbeat_s`; look for waiters ten times as often, so an idle
        owner hands off promptly."""
        last_beat = 0.0
        while not self._hb_stop.wait(min(0.1, self.cfg.heartbeat_s)):
            try:
                if not self.lease.held:
                    continue
                if time.monotonic() - last_beat >= self.cfg.heartbeat_s:
                    last_beat = time.monotonic()
                    if not self.lease.heartbeat():
                        self._step_down("the lease file was removed or replaced")
                        continue
                if self._op_lock.acquire(blocking=False):  # busy: the operation checks when it ends
                    try:
                        self._maybe_handoff()
                    finally:
                        self._op_lock.release()
            except Exception:
                log.exception("heartbeat failed")

    def _drop_ticket(self) -> None:
        if self._ticket is not None:
            self._ticket.remove()
            self._ticket = None

    def close(self) -> None:
        """Clean exit: finish what is in flight, stop serving peers, close the engine, release, and
        join this object's threads. A thread left inside onnxruntime while the interpreter exits
        aborts the process (SIGABRT, "terminate called without an active exception"), so close()
        returns only once the model warm-up and the heartbeat have ended."""
        self._closed = True
        self._hb_stop.set()
        if self._warm_thread is not None:
            self._warm_thread.join()  # bounded by one model load; it cannot be interrupted midway
        self._step_down("exiting")
        self._drop_ticket()
        self.peer.close()
        if self._hb_thread is not None and self._hb_thread is not threading.current_thread():
            self._hb_thread.join(timeout=5)

    # ---- status and errors -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Who owns the lease, who waits, and what this process is. Never takes the lease."""
        now = time.time()
        held = self.lease.held
        rec = self.lease.record if held else self.lease.read_record()
        holder = os.getpid() if held else holder_pid(self.lease.lock_path)
        owner = None
        if holder is not None:
            matches = rec is not None and rec.get("pid") == holder
            hb = rec.get("heartbeat_at") if matches and rec else None
            age = round(now - hb, 3) if isinstance(hb, int | float) else None
            state = "starting" if not matches else ("hung" if age is not None and age > self.cfg.hung_after_s
                                                    else "serving")
            owner = {
                "pid": holder, "host": rec.get("host") if matches and rec else None,
                "epoch": rec.get("epoch") if matches and rec else None,
                "since": _iso(rec.get("acquired_at")) if matches and rec else None,
                "heartbeat_age_s": age, "state": state,
                "mode": rec.get("mode") if matches and rec else None,
                "socket": rec.get("socket") if matches and rec else None,
            }
        own = self._ticket.path if self._ticket else None
        waiters = [{"pid": t["pid"], "since": _iso(t["since"]), "ticket": t["ticket"]}
                   for t in self.lease.live_tickets(exclude=own)]
        svc = self._service
        return {
            "mode": self.mode,
            "home": str(self.settings.home),
            "home_source": self.settings.home_source,
            "owner": owner,
            "waiters": waiters,
            "this_process": {
                "pid": os.getpid(), "role": self.role,
                "engine_open": bool(svc and svc.engine_open),
                "model_loaded": bool(svc and svc.embedder.loaded),
                "engine_imported": "qdrant_client" in sys.modules,
                "model_imported": "fastembed" in sys.modules,
            },
        }

    def doctor(self) -> dict[str, Any]:
        """Remove what dead processes left behind (never anything a live process holds)."""
        removed = self.lease.clean_if_free(self.socket_path)
        if removed is None:
            removed = self.lease.cleanup_stale()
        for what in removed:
            log.info("doctor: removed %s", what)
        return {"removed": removed, "status": self.status()}

    def _owner_desc(self, st: dict[str, Any] | None = None) -> str:
        st = st or self.status()["owner"]
        if st is None:
            return "no process holds the lease"
        return (f"owner pid {st['pid']} (epoch {st['epoch']}, state {st['state']}, "
                f"heartbeat {st['heartbeat_age_s']} s ago)")

    def _unresponsive_error(self, op: str) -> ClarityError:
        owner = self.status()["owner"]
        if owner is not None and owner["state"] != "hung":
            return CoordinationTimeout(
                f"{op}: the lease owner is alive but busy: {self._owner_desc(owner)}; it accepted the call but "
                f"did not answer within {self.cfg.call_deadline_s:g} s."
            )
        return OwnerUnresponsive(
            f"{op}: the lease owner is unresponsive: {self._owner_desc(owner)}; it accepted the call but did "
            f"not answer within {self.cfg.call_deadline_s:g} s. Nothing is evicted automatically; "
            f"`clarity status` shows it."
        )

    def _timeout_error(self, op: str, tried: list[str]) -> CoordinationTimeout:
        seen = list(dict.fromkeys(tried))[-5:]
        if self.mode == "naive":
            return CoordinationTimeout(
                f"{op}: could not open the engine within {self.cfg.call_deadline_s:g} s (naive mode: other "
                f"processes kept it open); tried {len(tried)} time(s)"
            )
        return CoordinationTimeout(
            f"{op}: no owner could serve the call within {self.cfg.call_deadline_s:g} s; "
            f"{self._owner_desc()}; tried {len(tried)} time(s): " + "; ".join(seen)
        )
