"""Heartbeat (coordination/heartbeat.py) in-process with a real Lease on real files in `tmp_path` and real
waiter tickets. `step_down` is the owner's callback: here it records the reason and releases the lease,
as the owner's does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarity.coordination import tickets
from clarity.coordination.heartbeat import Heartbeat
from clarity.coordination.lease import Lease
from tests.coordination.support import HOLD_TICKET, Holder, settings_for, wait_for


class Owner:
    def __init__(self, tmp_path: Path, **coordination: float) -> None:
        self.settings = settings_for(tmp_path, **coordination)
        self.lease = Lease(self.settings.coordination_dir)
        self.reasons: list[str] = []
        self.hb = Heartbeat(self.lease, self.settings.coordination, self.step_down)

    def step_down(self, reason: str) -> None:
        self.reasons.append(reason)
        self.lease.release()


@pytest.fixture
def owners() -> Iterator[list[Owner]]:
    made: list[Owner] = []
    yield made
    for o in made:
        o.hb.stop()
        o.hb.join()
        o.lease.release()


def test_the_heartbeat_refreshes_the_record_while_the_lease_is_held(tmp_path: Path, owners: list[Owner]) -> None:
    o = Owner(tmp_path, heartbeat_s=0.05)
    owners.append(o)
    assert o.lease.try_acquire(None, "forward")
    first = o.lease.read_record()
    assert first is not None
    o.hb.start()
    def beaten() -> bool:
        rec = o.lease.read_record()
        return rec is not None and rec["heartbeat_at"] > first["heartbeat_at"] + 0.1

    assert wait_for(beaten, 5)
    assert o.reasons == []


def test_a_lost_lease_file_makes_the_owner_step_down(tmp_path: Path, owners: list[Owner]) -> None:
    o = Owner(tmp_path, heartbeat_s=0.05)
    owners.append(o)
    assert o.lease.try_acquire(None, "forward")
    o.hb.start()
    o.lease.lock_path.unlink()
    assert wait_for(lambda: o.reasons, 5)
    assert o.reasons == ["the lease file was removed or replaced"]


def test_a_handoff_is_due_only_after_the_turns_first_operation_and_quantum_with_a_waiter(
        tmp_path: Path, owners: list[Owner]) -> None:
    o = Owner(tmp_path, handoff_quantum_s=0.3)
    owners.append(o)
    assert not o.hb.handoff_due()  # not the owner
    assert o.lease.try_acquire(None, "forward")
    o.hb.new_turn()
    waiter = Holder(o.lease.waiters_dir, HOLD_TICKET)
    try:
        assert not o.hb.handoff_due()  # no operation yet: opening the engine does not eat the turn
        o.hb.operation_done()
        assert not o.hb.handoff_due()  # the quantum has not passed
        time.sleep(0.35)
        o.hb.operation_done()  # later operations do not restart the quantum
        assert o.hb.handoff_due()
        o.hb.new_turn()
        assert not o.hb.handoff_due()
    finally:
        waiter.kill()
    o.hb.operation_done()
    time.sleep(0.35)
    assert tickets.live(o.lease.waiters_dir) == [] and not o.hb.handoff_due()  # nobody waits


def test_the_thread_hands_off_promptly_and_runs_once(tmp_path: Path, owners: list[Owner]) -> None:
    o = Owner(tmp_path, handoff_quantum_s=0, heartbeat_s=30)
    owners.append(o)
    assert o.lease.try_acquire(None, "forward")
    o.hb.start()
    o.hb.start()
    assert len([t for t in threading.enumerate() if t.name == "clarity-heartbeat"]) == 1
    o.hb.operation_done()
    waiter = Holder(o.lease.waiters_dir, HOLD_TICKET)
    try:
        t0 = time.monotonic()
        assert wait_for(lambda: o.reasons, 5)
        assert time.monotonic() - t0 < 1.0 and o.reasons == ["handing off to waiters"]
    finally:
        waiter.kill()


def test_stop_ends_the_thread_and_join_never_joins_itself(tmp_path: Path, owners: list[Owner]) -> None:
    o = Owner(tmp_path)
    owners.append(o)
    joined: list[bool] = []

    def step_down(reason: str) -> None:  # a step-down on the heartbeat thread joins it (close does)
        o.hb.join()
        joined.append(True)
        o.lease.release()

    o.hb = Heartbeat(o.lease, o.settings.coordination, step_down)
    assert o.lease.try_acquire(None, "forward")
    o.hb.start()
    o.lease.lock_path.unlink()
    assert wait_for(lambda: joined, 5)
    o.hb.stop()
    t0 = time.monotonic()
    o.hb.join()
    assert time.monotonic() - t0 < 1.0
    assert not [t for t in threading.enumerate() if t.name == "clarity-heartbeat"]
