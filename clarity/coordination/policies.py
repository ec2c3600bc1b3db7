"""One attempt at a call, per coordination mode. Each returns the result or raises `Retry` (try again
after a backoff, until the call's deadline), `OwnerTimeout` (sent, no reply by the deadline), or a
ClarityError (the answer).

- forward (default): run here when this process owns the lease; else send the operation to the owner's
  socket; when nobody answers (refused, reset, end of stream) take the lease and run here (one process
  wins, the others forward to it). When the lease is held but its socket stays unreachable for more
  than `TICKET_AFTER_S`, leave a waiter ticket so the owner hands off.
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
from clarity.coordination.ownership import Ownership
from clarity.coordination.peer_client import PeerClient
from clarity.errors import EngineLocked, NotOwner, NotSent, OwnerGone, OwnerTimeout, Retry
from clarity.platform import locks

if TYPE_CHECKING:
    from clarity.memory.model import Args

log = logging.getLogger(__name__)

TICKET_AFTER_S = 1.0
STANDBY_GRACE_S = 1.0


@dataclass
class Attempt:
    op: str
    args: Args
    deadline: float  # Unix time
    tried: list[str] = field(default_factory=list)
    unreachable_since: float | None = None  # monotonic; the owner's socket first found unreachable
    gone_since: float | None = None  # monotonic; the owner first found gone while a standby stood by


def run_owned(own: Ownership, a: Attempt) -> dict[str, Any]:
    try:
        return own.run(a.op, a.args, a.deadline, forwarded=False)
    except NotOwner as e:
        a.tried.append(f"run here: {e.message}")
        raise Retry() from None


def forward(own: Ownership, peer: PeerClient, a: Attempt) -> dict[str, Any]:
    if own.held:
        return run_owned(own, a)
    try:
        return peer.request(a.op, a.args, a.deadline)
    except OwnerGone as e:
        a.tried.append(f"forward: {e}")
    except NotSent as e:
        a.tried.append(f"forward: {e}")
        raise Retry() from None
    except OwnerTimeout:
        raise  # sent, no reply by the deadline: the coordinator says the outcome is unknown
    if not own.is_standby and locks.probe(own.lease.files.standby_lock) is locks.LockState.EXCLUSIVE:
        # another session stands by with its model loaded: let it take the lease (the kernel wakes
        # its wait but does not hand it the lock), unless it has not done so within the grace
        now = time.monotonic()
        a.gone_since = a.gone_since if a.gone_since is not None else now
        if now - a.gone_since < STANDBY_GRACE_S:
            a.tried.append("waiting for the hot standby to take over")
            raise Retry()
    if own.try_become_owner(a.deadline):
        peer.close()
        return run_owned(own, a)
    a.tried.append(f"take lease: {own.lease.refused_by or 'busy'}")
    # only a socket that stays unreachable while its lease is held calls for a handoff; a new owner
    # binds its socket a moment after taking the lease, and must not be asked to leave
    if a.unreachable_since is None:
        a.unreachable_since = time.monotonic()
    if own.ticket is None and time.monotonic() - a.unreachable_since > TICKET_AFTER_S:
        own.add_ticket()
        log.info("owner's socket unreachable while its lease is held; waiting for a handoff")
    raise Retry()


def handoff(own: Ownership, a: Attempt) -> dict[str, Any]:
    if own.held:
        return run_owned(own, a)
    ticket = own.add_ticket()
    ahead = [t for t in tickets.live(own.lease.waiters_dir, exclude=ticket.path) if t["ticket"] < ticket.path.name]
    if not ahead and own.try_become_owner(a.deadline):
        return run_owned(own, a)
    a.tried.append(f"handoff: {len(ahead)} waiter(s) ahead" if ahead else
                   f"handoff: {own.lease.refused_by or 'lease held'}")
    raise Retry()


def naive(own: Ownership, a: Attempt) -> dict[str, Any]:
    try:
        return own.run_naive(a.op, a.args)
    except EngineLocked:
        a.tried.append("open engine: held by another process")
        raise Retry() from None


def direct(own: Ownership, a: Attempt) -> dict[str, Any]:
    return own.service(exclusive_engine=False).execute(a.op, a.args)
