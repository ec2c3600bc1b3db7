"""One attempt at a call, per coordination mode. Each returns the result or raises `Retry` (try again
after a backoff, until the call's deadline), `OwnerTimeout` (sent, no reply by the deadline), or a
ClarityError (the answer).

- forward (default): run here when this process owns the lease; else send the operation to the owner's
  socket; when nobody answers (refused, reset, end of stream) take the lease and run here (one process
  wins, the others forward to it). When the lease is held but its socket stays unreachable for more
  than `coordination.ticket_after_s`, leave a waiter ticket so the owner hands off. When the owner is
  gone while another session is the hot standby (standby.py), let it take the lease first, for at most
  `coordination.standby_grace_s`.
- handoff: every process takes turns: leave a ticket, take the lease when no older ticket is live.
- naive (benchmarks only): open the engine, run, close; retry while another process has it open.
- direct: the engine is not exclusive (a Qdrant server): run here, no lease at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clarity.coordination import tickets
from clarity.errors import EngineLocked, NotOwner, NotSent, OwnerGone, OwnerTimeout, Retry
from clarity.platform import locks

if TYPE_CHECKING:
    from clarity.coordination.ownership import Ownership
    from clarity.coordination.peer_client import PeerClient
    from clarity.coordination.service_host import ServiceHost
    from clarity.coordination.standby import Standby
    from clarity.memory.model import Args

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One call across its attempts: what it tried (for its error message) and since when the owner
    looked unreachable or gone. Written only through its methods, by the policy of the call's mode."""

    op: str
    args: Args
    deadline: float  # time.monotonic() of this process
    tried: list[str] = field(default_factory=list)
    _unreachable_since: float | None = field(default=None, init=False, repr=False)  # monotonic
    _gone_since: float | None = field(default=None, init=False, repr=False)  # monotonic

    def note(self, what: str) -> None:
        self.tried.append(what)

    def unreachable_for(self) -> float:
        """Seconds since an attempt of this call first found the owner's socket unreachable while its
        lease was held (0.0 the first time)."""
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        return now - self._unreachable_since

    def gone_for(self) -> float:
        """Seconds since an attempt of this call first found the owner gone while another session stood
        by (0.0 the first time)."""
        now = time.monotonic()
        if self._gone_since is None:
            self._gone_since = now
        return now - self._gone_since


def run_owned(own: Ownership, a: Attempt) -> dict[str, Any]:
    try:
        return own.run(a.op, a.args, a.deadline, forwarded=False)
    except NotOwner as e:
        a.note(f"run here: {e.message}")
        raise Retry() from None


def forward(own: Ownership, peer: PeerClient, a: Attempt, standby: Standby | None = None) -> dict[str, Any]:
    """`standby`: this process's candidacy for the hot standby (None when it is no candidate)."""
    if own.held:
        return run_owned(own, a)
    try:
        return peer.request(a.op, a.args, a.deadline)
    except OwnerGone as e:
        a.note(f"forward: {e}")
    except NotSent as e:
        a.note(f"forward: {e}")
        raise Retry() from None
    except OwnerTimeout:
        raise  # sent, no reply by the deadline: the coordinator says the outcome is unknown
    is_standby = standby is not None and standby.holds_role
    if not is_standby and locks.probe(own.lease.files.standby_lock) is locks.LockState.EXCLUSIVE:
        # another session stands by with its model loaded: let it take the lease (the kernel wakes
        # its wait but does not hand it the lock), unless it has not done so within the grace
        if a.gone_for() < own.cfg.standby_grace_s:
            a.note("waiting for the hot standby to take over")
            raise Retry()
    if own.try_become_owner(a.deadline):
        peer.close()
        return run_owned(own, a)
    a.note(f"take lease: {own.lease.refused_by or 'busy'}")
    # only a socket that stays unreachable while its lease is held calls for a handoff; a new owner
    # binds its socket a moment after taking the lease, and must not be asked to leave
    if a.unreachable_for() > own.cfg.ticket_after_s and own.waiter.ticket is None:
        own.waiter.add()
        log.info("owner's socket unreachable while its lease is held; waiting for a handoff")
    raise Retry()


def handoff(own: Ownership, a: Attempt) -> dict[str, Any]:
    if own.held:
        return run_owned(own, a)
    ticket = own.waiter.add()
    ahead = [t for t in tickets.live(own.lease.waiters_dir, exclude=ticket.path) if t["ticket"] < ticket.path.name]
    if not ahead and own.try_become_owner(a.deadline):
        return run_owned(own, a)
    a.note(f"handoff: {len(ahead)} waiter(s) ahead" if ahead else
           f"handoff: {own.lease.refused_by or 'lease held'}")
    raise Retry()


def naive(services: ServiceHost, a: Attempt) -> dict[str, Any]:
    try:
        return services.run_naive(a.op, a.args)
    except EngineLocked:
        a.note("open engine: held by another process")
        raise Retry() from None


def direct(services: ServiceHost, a: Attempt) -> dict[str, Any]:
    from clarity.engines.server_calls import call_deadline

    with call_deadline(a.deadline):  # every server request of this call ends by the call's deadline
        return services.service(exclusive_engine=False).execute(a.op, a.args)
