"""One attempt per mode (coordination/policies.py), in-process: a real Ownership over a real Lease in
`tmp_path`, a real socket (an OwnerServer where an owner must answer), real child processes holding the
lease, a ticket or standby.lock. The memory service is the fake of tests/coordination/support.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity.coordination import policies
from clarity.coordination.owner_server import OwnerServer, socket_path_for
from clarity.coordination.ownership import Ownership
from clarity.coordination.peer_client import PeerClient
from clarity.coordination.standby import Standby
from clarity.errors import EngineLocked, OwnerTimeout, Retry
from clarity.platform import locks
from tests.coordination.support import HOLD_LEASE, HOLD_LOCK, HOLD_TICKET, FakeBuild, FakeService, Holder, settings_for


class Setup:
    def __init__(self, tmp_path: Path, **coordination: Any) -> None:
        self.settings = settings_for(tmp_path, **coordination)
        self.svc = FakeService()
        self.build = FakeBuild(self.svc)
        self.sock = socket_path_for(self.settings.coordination_dir)
        self.own = Ownership(self.settings, self.sock, warm_model=False, build=self.build)
        self.peer = PeerClient(self.sock, 1 << 20)
        self.holders: list[Holder] = []

    def hold(self, path: Path, script: str) -> Holder:
        self.holders.append(Holder(path, script))
        return self.holders[-1]

    def close(self) -> None:
        for h in self.holders:
            h.kill()
        self.own.close()
        self.peer.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Setup] = []

    def new(**coordination: Any) -> Setup:
        made.append(Setup(tmp_path / str(len(made)), **coordination))
        return made[-1]

    yield new
    for s in made:
        s.close()


def _attempt(op: str = "list", deadline_s: float = 5.0) -> policies.Attempt:
    return policies.Attempt(op, {"limit": 1}, time.monotonic() + deadline_s)


def test_forward_with_nobody_serving_takes_the_lease_and_runs_here(make: Any) -> None:
    s = make()
    assert s.own.lease.read_record() is None
    out = policies.forward(s.own, s.peer, _attempt())
    assert out["ran_here"] and s.own.held and s.svc.ran == [("list", {"limit": 1})]
    out = policies.forward(s.own, s.peer, _attempt("stats"))  # the owner runs its own calls here
    assert out["op"] == "stats" and len(s.svc.ran) == 2


def test_forward_sends_the_call_to_the_owner_that_serves(make: Any) -> None:
    s = make()
    answered: list[str] = []

    def owner(op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        answered.append(op)
        return {"from": "the owner"}

    srv = OwnerServer(s.sock, owner, 1 << 20)
    srv.start()
    try:
        assert policies.forward(s.own, s.peer, _attempt()) == {"from": "the owner"}
    finally:
        srv.stop()
    assert answered == ["list"] and not s.own.held and s.svc.ran == []


def test_forward_passes_on_a_call_that_was_sent_but_not_answered(make: Any) -> None:
    s = make()

    def frozen(op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        time.sleep(1.0)
        return {}

    srv = OwnerServer(s.sock, frozen, 1 << 20, drain_s=2)
    srv.start()
    try:
        with pytest.raises(OwnerTimeout):
            policies.forward(s.own, s.peer, _attempt(deadline_s=0.3))
    finally:
        srv.stop()
    assert not s.own.held  # the outcome is unknown: it never runs the call here as well


def test_forward_to_an_unreachable_owner_retries_then_leaves_a_ticket(make: Any) -> None:
    s = make(ticket_after_s=0.3)
    s.hold(s.own.lease.dir, HOLD_LEASE)  # the lease is held, nobody serves its socket
    a = _attempt()
    with pytest.raises(Retry):
        policies.forward(s.own, s.peer, a)
    assert a.tried[-1] == "take lease: lease held by another process" and s.own.waiter.ticket is None
    time.sleep(0.35)
    with pytest.raises(Retry):
        policies.forward(s.own, s.peer, a)
    assert s.own.waiter.ticket is not None  # unreachable longer than ticket_after_s: ask for a handoff


def test_forward_gives_a_standby_of_another_session_its_grace(make: Any) -> None:
    s = make(standby_grace_s=0.4)
    s.own.lease.ensure_dirs()
    s.hold(s.own.lease.files.standby_lock, HOLD_LOCK)
    a = _attempt()
    t0 = time.monotonic()
    while True:
        try:
            out = policies.forward(s.own, s.peer, a)
            break
        except Retry:
            time.sleep(0.02)
    took = time.monotonic() - t0
    assert "waiting for the hot standby to take over" in a.tried
    assert 0.35 < took < 3 and out["ran_here"] and s.own.held  # the standby did not come: it took the lease


def test_forward_in_the_standby_itself_takes_the_lease_at_once_and_resigns(make: Any) -> None:
    s = make(standby_grace_s=30)
    standby = Standby(s.own)  # a candidate; its thread is not started: the role is taken by hand
    assert standby._become_standby() and standby.holds_role
    assert locks.probe(s.own.lease.files.standby_lock) is locks.LockState.EXCLUSIVE
    a = _attempt()
    out = policies.forward(s.own, s.peer, a, standby)
    assert out["ran_here"] and "waiting for the hot standby to take over" not in a.tried
    assert not standby.holds_role and locks.probe(s.own.lease.files.standby_lock) is locks.LockState.FREE
    standby.close()


def test_handoff_waits_behind_an_older_ticket_then_takes_its_turn(make: Any) -> None:
    s = make(mode="handoff")
    s.own.lease.ensure_dirs()
    older = s.hold(s.own.lease.waiters_dir, HOLD_TICKET)
    a = _attempt()
    with pytest.raises(Retry):
        policies.handoff(s.own, a)
    assert a.tried == ["handoff: 1 waiter(s) ahead"] and s.own.waiter.ticket is not None and not s.own.held
    older.kill()
    out = policies.handoff(s.own, a)
    assert out["ran_here"] and s.own.held and s.own.waiter.ticket is None  # taking the lease dropped it


def test_handoff_with_the_lease_held_elsewhere_retries(make: Any) -> None:
    s = make(mode="handoff")
    s.hold(s.own.lease.dir, HOLD_LEASE)
    a = _attempt()
    with pytest.raises(Retry):
        policies.handoff(s.own, a)
    assert a.tried == ["handoff: lease held by another process"] and s.svc.ran == []


def test_naive_runs_open_run_close_and_retries_while_the_engine_is_open_elsewhere(make: Any) -> None:
    s = make(mode="naive")
    assert policies.naive(s.own.services, _attempt())["ran_here"]
    assert s.svc.closed == 1 and s.build.calls[0]["exclusive"] is None and not s.own.held
    s.svc.fail = EngineLocked("held")
    a = _attempt()
    with pytest.raises(Retry):
        policies.naive(s.own.services, a)
    assert a.tried == ["open engine: held by another process"] and s.svc.closed == 2


def test_direct_runs_here_without_a_lease(make: Any) -> None:
    s = make()
    assert policies.direct(s.own.services, _attempt())["ran_here"]
    assert not s.own.held and s.build.calls[0]["exclusive"] is None and s.svc.closed == 0
    assert locks.probe(s.own.lease.lock_path) in (None, locks.LockState.FREE)


def test_run_owned_turns_not_owner_into_a_retry(make: Any) -> None:
    s = make()
    a = _attempt()
    with pytest.raises(Retry):
        policies.run_owned(s.own, a)
    assert a.tried == ["run here: this process no longer owns the lease"] and s.svc.ran == []
