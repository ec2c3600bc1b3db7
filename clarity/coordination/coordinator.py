"""`Coordinator.call`: one operation, run wherever it can run now, within the call's deadline.

Where it runs is decided by the mode's policy (policies.py: forward, handoff, naive), or, when the
engine is not exclusive (`clarity.engines.engine_is_exclusive` is False: a Qdrant server), here with
no lease, no socket and no owner at all.

What holds for a call:
- It returns the answer, or raises a ClarityError whose message says what happened. Transient
  failures are retried (tenacity, exponential backoff with jitter, capped at
  `coordination.retry_max_wait_s`: a failover is found by the next attempt within that) until the deadline
  (`coordination.call_deadline_s`); every wait inside (locks, connect, send, receive, backoff) is
  bounded by that deadline, so a call ends by it (plus the time to finish an operation that had
  already started here, which cannot be interrupted). The deadline is a `time.monotonic()` instant,
  never the wall clock, so a clock step (NTP, a suspended laptop's resync, a hand change) neither
  lengthens nor cuts a wait; what crosses the socket is the time left (wire.py), which the owner turns
  into a deadline on its own monotonic clock.
- An owner of another protocol (another Clarity version on the same store) is never sent the call:
  it fails at once with VersionMismatch, which names both versions and says to restart the older
  sessions (peer_client.py). Not retried: it lasts until those sessions exit. A newer session does not
  wait for an older owner to hand off either: an older owner hands off only to waiters it knows, and
  the sessions it serves (older too) would then meet a newer owner and fail the same way, so the turn
  would only move the failure (or bounce between versions); one clear message, at once, says what to
  do, and the session serves again, without a restart, as soon as the older owner is gone (the next
  call finds no owner or a current one; a hot standby of this version takes the lease the moment the
  older owner lets go).
- An error from the operation itself (InvalidArgument, NotFound, ...) means it changed nothing; so
  does a CoordinationTimeout that says "nothing was applied".
- OwnerUnresponsive / "alive but busy" after the request was sent: the outcome is unknown (the owner
  may still apply it). Retrying is safe: callers choose write ids before the first attempt, so a
  repeated store or import is an idempotent upsert and a repeated delete is a no-op. Not guaranteed:
  that an `update` applied twice keeps its first `updated_at`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from clarity.config import Settings
from clarity.coordination import policies, status
from clarity.coordination.owner_server import socket_path_for
from clarity.coordination.ownership import Ownership
from clarity.coordination.peer_client import PeerClient
from clarity.coordination.standby import Standby
from clarity.engines import engine_is_exclusive
from clarity.errors import ClarityError, CoordinationTimeout, OwnerTimeout, OwnerUnresponsive, Retry

if TYPE_CHECKING:
    from clarity.memory.model import Args
    from clarity.memory.service import MemoryService

log = logging.getLogger(__name__)

WRITES = ("store", "update", "delete", "review", "import")


def _retryable(e: BaseException) -> bool:
    return isinstance(e, ClarityError) and e.retryable


class Coordinator:
    def __init__(self, settings: Settings, *, observer: bool = False, warm_model: bool = False,
                 standby: bool = False) -> None:
        """`warm_model`: a long-lived server loads the model in the background as soon as it takes the
        lease; a one-shot command never does (it loads only what its one operation uses).
        `standby`: a long-lived server is a candidate for the hot standby (standby.py); only in forward
        mode over an exclusive engine. A one-shot command never is."""
        self.settings = settings
        self.cfg = settings.coordination
        self.mode = self.cfg.mode
        self.observer = observer
        self.exclusive = engine_is_exclusive(settings)
        self.socket_path = socket_path_for(settings.coordination_dir) if self.exclusive else None
        self.own = Ownership(settings, self.socket_path if self.mode == "forward" else None, warm_model=warm_model)
        self.lease = self.own.lease
        self.services = self.own.services
        self.peer = PeerClient(self.socket_path, self.cfg.max_frame_bytes, self.lease.read_record) \
            if self.socket_path else None
        self._closed = False
        self._close_lock = threading.Lock()
        self.standby: Standby | None = None
        if standby and self.exclusive and self.mode == "forward" and not observer:
            self.standby = Standby(self.own)
            self.standby.start()

    @property
    def _service(self) -> MemoryService | None:
        return self.services.built

    @property
    def role(self) -> str:
        if self.observer:
            return "observer"
        if not self.exclusive:
            return "direct"
        if self.lease.held:
            return "owner"
        if self.standby is not None and self.standby.active:
            return "standby"
        if self.own.waiter.ticket is not None:
            return "waiter"
        return "peer" if self.mode == "forward" else "idle"

    def call(self, op: str, args: Args) -> dict[str, Any]:
        """Run `op(args)` wherever it can run now; see the module docstring for what holds. `args` is
        JSON or the op's request model already parsed here (run as is here, sent once as JSON)."""
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

        if self._closed:
            raise ClarityError("this Clarity process is shutting down")
        deadline = time.monotonic() + self.cfg.call_deadline_s  # never the wall clock: a step changes no wait
        a = policies.Attempt(op, args, deadline)
        retrying = Retrying(
            stop=stop_after_delay(self.cfg.call_deadline_s),
            wait=wait_random_exponential(multiplier=0.005, max=self.cfg.retry_max_wait_s),
            retry=retry_if_exception(_retryable),  # errors.py says which errors are transient
            sleep=lambda s: time.sleep(min(s, max(0.0, deadline - time.monotonic()))),
            reraise=False,
        )
        try:
            if not self.exclusive:
                return policies.direct(self.services, a)
            for attempt in retrying:
                with attempt:
                    if time.monotonic() >= deadline:
                        raise Retry()
                    return self._attempt(a)
        except RetryError:
            raise self._timeout_error(a) from None
        except OwnerTimeout:
            raise self._unknown_outcome_error(op) from None
        except ClarityError:
            raise
        except Exception as e:  # the same readable error a peer gets from the owner (wire.unexpected_reply)
            log.exception("%s failed", op)
            where = " in the owner" if self.exclusive else ""  # a Qdrant server: no owner
            raise ClarityError(f"{op} failed{where}: {type(e).__name__}: {e}") from e
        finally:
            if self.own.waiter.ticket is not None and not self.lease.held:
                self.own.waiter.drop()
        raise AssertionError("unreachable")

    def _attempt(self, a: policies.Attempt) -> dict[str, Any]:
        if self.mode == "naive":
            return policies.naive(self.services, a)
        if self.mode == "handoff":
            return policies.handoff(self.own, a)
        assert self.peer is not None
        return policies.forward(self.own, self.peer, a, self.standby)

    def close(self) -> None:
        """Clean exit: finish what is in flight, send every pending reply, stop serving peers, close
        the engine, release, and join this object's threads."""
        with self._close_lock:
            self._closed = True
            if self.standby is not None:
                self.standby.close()
            self.own.close()
            if self.peer is not None:
                self.peer.close()

    # ---- status and errors -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Who owns the lease, who waits, and what this process is. Never takes the lease, never waits."""
        return status.status(self.settings, lease=self.lease, own_ticket=self.own.waiter.path,
                             me=status.this_process(self.role, self._service, self.services.embedder))

    def _owner_desc(self, owner: dict[str, Any] | None = None) -> str:
        owner = owner if owner is not None else status.owner(self.settings, self.lease)
        if owner is None:
            return "no process holds the lease"
        return (f"owner {owner['where']} (epoch {owner['epoch']}, state {owner['state']}, "
                f"heartbeat {owner['heartbeat_age_s']} s ago)")

    def _unknown_outcome_error(self, op: str) -> ClarityError:
        owner = status.owner(self.settings, self.lease)
        outcome = (" The outcome is unknown: the owner may still apply it. Retrying is safe (the call's ids "
                   "were chosen before it was sent)." if op in WRITES else "")
        if owner is not None and owner["state"] != "hung":
            return CoordinationTimeout(
                f"{op}: the lease owner is alive but busy: {self._owner_desc(owner)}; it accepted the call but "
                f"did not answer within {self.cfg.call_deadline_s:g} s.{outcome}"
            )
        return OwnerUnresponsive(
            f"{op}: the lease owner is unresponsive: {self._owner_desc(owner)}; it accepted the call but did "
            f"not answer within {self.cfg.call_deadline_s:g} s.{outcome} Nothing is evicted automatically; "
            f"`clarity status` shows it."
        )

    def _timeout_error(self, a: policies.Attempt) -> CoordinationTimeout:
        seen = list(dict.fromkeys(a.tried))[-5:]
        if self.mode == "naive":
            return CoordinationTimeout(
                f"{a.op}: could not open the engine within {self.cfg.call_deadline_s:g} s (naive mode: other "
                f"processes kept it open); tried {len(a.tried)} time(s)"
            )
        retry = " Retrying is safe (the call's ids were chosen before its first attempt)." if a.op in WRITES else ""
        return CoordinationTimeout(
            f"{a.op}: no owner could serve the call within {self.cfg.call_deadline_s:g} s; "
            f"{self._owner_desc()}; tried {len(a.tried)} time(s): " + "; ".join(seen) + "." + retry
        )
