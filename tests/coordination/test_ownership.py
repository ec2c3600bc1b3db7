"""Ownership (coordination/ownership.py) in-process: a real Lease on real lock files in `tmp_path`, a real
socket server, a real child process where another holder is needed. The memory service is the fake of
tests/coordination/support.py (this tests the owner's coordination logic, not the service)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarity.coordination import tickets
from clarity.coordination.owner_server import socket_path_for
from clarity.coordination.ownership import Ownership
from clarity.coordination.peer_client import PeerClient
from clarity.errors import CoordinationTimeout, EngineLocked, LeaseLost, NotOwner
from clarity.platform import locks
from tests.coordination.support import (
    HOLD_LEASE,
    HOLD_TICKET,
    FakeBuild,
    FakeEmbedder,
    FakeService,
    Holder,
    settings_for,
    wait_for,
)


def _threads(*prefixes: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefixes) and t.is_alive()]


@pytest.fixture
def svc() -> FakeService:
    return FakeService()


@pytest.fixture
def own(tmp_path: Path, svc: FakeService) -> Iterator[Ownership]:
    settings = settings_for(tmp_path, call_deadline_s=5, heartbeat_s=60)  # no beat during a test, but the first
    o = Ownership(settings, socket_path_for(settings.coordination_dir), warm_model=False, build=FakeBuild(svc),
                  new_embedder=FakeEmbedder)
    yield o
    o.close()


def _later(s: float = 5.0) -> float:
    return time.monotonic() + s


def test_taking_the_lease_records_it_binds_the_socket_and_serves_forwarded_calls(own: Ownership,
                                                                                 svc: FakeService) -> None:
    taken: list[bool] = []
    own.on_taking_lease(lambda: taken.append(own.held))
    assert own.try_become_owner(_later())
    assert own.held and taken == [True]  # listeners run once the lease is ours
    assert locks.probe(own.lease.lock_path) is locks.LockState.EXCLUSIVE
    record = own.lease.read_record()
    assert record is not None and record["socket"] == str(own.socket_path) and record["released_at"] is None
    assert own.socket_path is not None
    reply = PeerClient(own.socket_path, 1 << 20).request("list", {"limit": 1}, _later())
    assert reply["ran_here"] and svc.ran == [("list", {"limit": 1})]
    assert own.try_become_owner(_later()) and taken == [True]  # held already: nothing taken again


def test_another_holder_keeps_this_process_out(own: Ownership, tmp_path: Path) -> None:
    holder = Holder(own.lease.dir, HOLD_LEASE)
    try:
        assert not own.try_become_owner(_later())
        assert not own.held and own.lease.refused_by == "lease held by another process"
        assert own.socket_path is not None and not own.socket_path.exists()
        with pytest.raises(NotOwner):
            own.run("list", {}, _later(), forwarded=False)
    finally:
        holder.kill()
    assert own.try_become_owner(_later())


def test_taking_the_lease_drops_this_process_ticket_and_removes_stale_ones(own: Ownership) -> None:
    own.lease.ensure_dirs()
    stale = own.lease.waiters_dir / f"{'0' * 20}-1-dead.json"
    stale.write_text("{}")  # nobody holds its lock: a dead waiter's
    mine = own.waiter.add()
    assert own.try_become_owner(_later())
    assert own.waiter.ticket is None and not mine.path.exists() and not stale.exists()


def test_a_call_whose_deadline_passed_is_never_applied(own: Ownership, svc: FakeService) -> None:
    assert own.try_become_owner(_later())
    with pytest.raises(CoordinationTimeout, match="nothing was applied"):
        own.run("list", {}, time.monotonic() - 0.01, forwarded=False)
    busy, done = threading.Event(), threading.Event()

    def long_operation() -> None:  # another thread (the operation lock is reentrant)
        with own.op_lock:
            busy.set()
            done.wait(10)

    t = threading.Thread(target=long_operation)
    t.start()
    assert busy.wait(5)
    try:
        t0 = time.monotonic()
        with pytest.raises(CoordinationTimeout, match="busy with other operations"):
            own.run("list", {}, _later(0.2), forwarded=False)
        assert time.monotonic() - t0 < 2
    finally:
        done.set()
        t.join(10)
    assert svc.ran == []


def test_an_owner_that_lost_its_lease_file_steps_down_and_applies_nothing(own: Ownership, svc: FakeService) -> None:
    assert own.try_become_owner(_later())
    own.run("list", {}, _later(), forwarded=False)
    time.sleep(0.3)  # past the heartbeat's first beat: the check below is the one that finds the loss
    own.lease.lock_path.unlink()  # e.g. someone cleaned the folder
    with pytest.raises(LeaseLost):
        own.run("update", {"id": "x"}, _later(), forwarded=False)
    with pytest.raises(NotOwner):
        own.run("store", {"id": "y", "content": "after the loss"}, _later(), forwarded=False)
    assert not own.held and svc.ran == [("list", {})] and svc.batches == []
    assert svc.closed >= 1  # the step-down closed the engine
    assert own.socket_path is not None and not own.socket_path.exists()


def test_stores_run_as_batches_and_an_open_engine_elsewhere_means_not_owner(own: Ownership, svc: FakeService) -> None:
    assert own.try_become_owner(_later())
    ids = [str(uuid.uuid4()) for _ in range(2)]
    assert own.run("store", {"id": ids[0], "content": "a"}, _later(), forwarded=False) == {"stored": True,
                                                                                            "id": ids[0]}
    svc.fail = EngineLocked("another process has it open")
    with pytest.raises(NotOwner, match="still open elsewhere"):
        own.run("store", {"id": ids[1], "content": "b"}, _later(), forwarded=False)
    with pytest.raises(NotOwner, match="still open elsewhere"):
        own.run("list", {}, _later(), forwarded=False)
    assert [[a["id"] for a in b] for b in svc.batches] == [[ids[0]]]


def test_step_down_sends_the_reply_of_a_forwarded_operation_that_was_running(own: Ownership, svc: FakeService) -> None:
    assert own.try_become_owner(_later())
    sock = own.socket_path
    assert sock is not None
    svc.gate = threading.Event()
    replies: list[object] = []
    peer = threading.Thread(target=lambda: replies.append(PeerClient(sock, 1 << 20).request("list", {"n": 1},
                                                                                          _later())))
    peer.start()
    assert svc.running.wait(5)
    stepping = threading.Thread(target=own.step_down, args=("a test",))
    stepping.start()
    time.sleep(0.2)
    assert own.held  # it waits for the running operation (the operation lock)
    svc.gate.set()
    stepping.join(10)
    peer.join(10)
    assert replies and replies[0] == {"op": "list", "args": {"n": 1}, "ran_here": True}
    assert not own.held and locks.probe(own.lease.lock_path) is locks.LockState.FREE
    record = own.lease.read_record()
    assert record is not None and record["released_at"] is not None
    assert not _threads("clarity-peer", "clarity-owner")  # the server's threads were joined


def test_a_due_handoff_steps_down_after_the_operation(tmp_path: Path, svc: FakeService) -> None:
    settings = settings_for(tmp_path, handoff_quantum_s=0)
    own = Ownership(settings, None, warm_model=False, build=FakeBuild(svc))
    waiter = None
    try:
        assert own.try_become_owner(_later())
        waiter = Holder(own.lease.waiters_dir, HOLD_TICKET)
        assert own.run("list", {}, _later(), forwarded=False)["ran_here"]
        assert not own.held  # it handed off right after the operation, on the caller's thread
        assert own.try_become_owner(_later())
        own.run("list", {}, _later(), forwarded=True)  # forwarded: the heartbeat thread steps down
        assert wait_for(lambda: not own.held, 5)
    finally:
        if waiter is not None:
            waiter.kill()
        own.close()


def test_take_over_uses_the_standby_lock_and_opens_the_engine(own: Ownership, svc: FakeService) -> None:
    own.lease.ensure_dirs()
    lock = locks.FileLock(own.lease.lock_path)
    lock.wait(exclusive=True)  # free: the kernel wait returns at once
    assert own.take_over(lock)
    assert own.held and svc.opened == 1
    assert own.socket_path is not None and own.socket_path.exists()
    own.close()
    lock2 = locks.FileLock(own.lease.lock_path)
    lock2.wait(exclusive=True)
    assert not own.take_over(lock2)  # closing: the lock it got is released at once
    assert locks.probe(own.lease.lock_path) is locks.LockState.FREE and svc.opened == 1


def test_close_ends_the_warm_up_and_the_heartbeat_and_releases_everything(tmp_path: Path) -> None:
    gate = threading.Event()
    embedder = FakeEmbedder(gate)
    svc = FakeService(embedder)
    settings = settings_for(tmp_path)
    own = Ownership(settings, socket_path_for(settings.coordination_dir), warm_model=True, build=FakeBuild(svc))
    assert own.try_become_owner(_later())
    assert embedder.started.wait(5)  # the warm-up thread is loading the model
    ticket = own.waiter.add()
    closing = threading.Thread(target=own.close)
    closing.start()
    time.sleep(0.2)
    assert closing.is_alive()  # close waits for the model load in progress
    gate.set()
    closing.join(10)
    assert not closing.is_alive() and embedder.calls == 1
    assert not _threads("clarity-warm", "clarity-heartbeat", "clarity-owner", "clarity-peer")
    assert not own.held and not ticket.path.exists() and tickets.live(own.lease.waiters_dir) == []
    assert not own.try_become_owner(_later())  # closed: never the owner again
