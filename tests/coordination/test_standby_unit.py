"""The hot standby (coordination/standby.py) in-process: real Ownership and Lease in `tmp_path`, real OFD
(or flock) locks, a real child process holding the lease as the owner to stand by for (killing it frees
the lease, as an owner's death does). The model and the memory service are the fakes of
tests/coordination/support.py: this tests the role, the kernel wait and the take-over, not the service.
tests/test_standby.py has the end-to-end tests with real `clarity serve` sessions."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity.coordination import standby as standby_module
from clarity.coordination.owner_server import socket_path_for
from clarity.coordination.ownership import Ownership
from clarity.coordination.standby import Standby
from clarity.platform import locks
from tests.coordination.support import HOLD_LEASE, FakeBuild, FakeEmbedder, Holder, settings_for, wait_for


class Candidate:
    def __init__(self, coord_home: Path, gate: threading.Event | None = None, **coordination: Any) -> None:
        self.settings = settings_for(coord_home, **coordination)
        self.build = FakeBuild()
        self.embedder = FakeEmbedder(gate)
        self.own = Ownership(self.settings, socket_path_for(self.settings.coordination_dir), warm_model=False,
                             build=self.build, new_embedder=lambda: self.embedder)
        self.standby = Standby(self.own)

    @property
    def lock_state(self) -> locks.LockState | None:
        return locks.probe(self.own.lease.files.standby_lock)

    def close(self) -> None:  # the coordinator's order
        self.standby.close()
        self.own.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    """`world.candidate(**coordination)`, `world.owner()`: a child holding the lease of the same home."""
    made: list[Candidate] = []
    holders: list[Holder] = []

    class World:
        def candidate(self, gate: threading.Event | None = None, **coordination: Any) -> Candidate:
            made.append(Candidate(tmp_path, gate, **coordination))
            return made[-1]

        def owner(self) -> Holder:
            holders.append(Holder(settings_for(tmp_path).coordination_dir, HOLD_LEASE))
            return holders[-1]

    yield World()
    for c in made:
        c.close()
    for h in holders:
        h.kill()


def test_with_no_owner_nobody_stands_by(world: Any) -> None:
    c = world.candidate()
    c.standby.start()
    time.sleep(0.3)
    assert not c.standby.holds_role and not c.standby.active and c.own.services.embedder is None
    assert c.lock_state in (None, locks.LockState.FREE) and not c.own.held


def test_the_standby_loads_the_model_waits_and_takes_over_when_the_owner_dies(
        world: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="clarity.coordination")
    owner = world.owner()
    c = world.candidate()
    c.standby.start()
    assert wait_for(lambda: c.standby.active, 10)
    assert c.standby.holds_role and c.lock_state is locks.LockState.EXCLUSIVE
    assert c.own.lease.files.standby_lock.read_text() == str(os.getpid())  # for `clarity status`
    assert c.embedder.loaded and c.own.services.embedder is c.embedder  # the model, handed over
    assert c.build.calls == [] and not c.own.held  # the engine is not touched while standing by
    owner.kill()
    assert wait_for(lambda: c.own.held, 10)
    assert wait_for(lambda: c.build.service is not None and c.build.service.opened == 1, 5)
    assert c.build.calls[0]["embedder"] is c.embedder  # the service it built uses the preloaded model
    assert c.own.socket_path is not None and c.own.socket_path.exists()
    assert not c.standby.holds_role and not c.standby.active  # owner now: it resigned the role
    assert c.lock_state is locks.LockState.FREE
    assert "standby: the lease was freed; taking over" in caplog.text
    assert "standby: released the standby role" in caplog.text


def test_one_standby_at_a_time_and_a_clean_exit_frees_the_role_at_once(world: Any) -> None:
    world.owner()
    a, b = world.candidate(), world.candidate()
    a.standby.start()
    assert wait_for(lambda: a.standby.active, 10)
    b.standby.start()
    time.sleep(0.3)
    assert not b.standby.holds_role and b.own.services.embedder is None  # the other never loads the model
    a.close()
    assert a.lock_state is not locks.LockState.EXCLUSIVE or b.standby.holds_role  # released at once
    assert wait_for(lambda: b.standby.active, 10)


def test_how_often_a_candidate_tries_is_the_setting(world: Any) -> None:
    fast, slow = world.candidate(), world.candidate(standby_poll_s=5.0)
    slow.standby.start()
    time.sleep(0.2)  # its first try found no owner: the next one is 5 s away
    world.owner()
    time.sleep(1.0)
    assert not slow.standby.holds_role
    fast.standby.start()
    assert wait_for(lambda: fast.standby.active, 10)


def test_a_wait_that_returns_after_close_releases_the_lease_lock_unused(world: Any) -> None:
    owner = world.owner()
    c = world.candidate()
    c.standby.start()
    assert wait_for(lambda: c.standby.active, 10)
    thread = c.standby._thread
    assert thread is not None
    c.close()
    assert thread.is_alive()  # still in the kernel wait: it cannot be interrupted
    owner.kill()
    assert wait_for(lambda: not thread.is_alive(), 10)
    assert locks.probe(c.own.lease.lock_path) is locks.LockState.FREE and not c.own.held and c.build.calls == []


def test_closing_waits_for_the_model_load_in_progress(world: Any) -> None:
    world.owner()
    gate = threading.Event()
    c = world.candidate(gate)
    c.standby.start()
    assert c.embedder.started.wait(10)  # the standby is inside the model load
    closing = threading.Thread(target=c.close)
    closing.start()
    time.sleep(0.2)
    assert closing.is_alive()
    gate.set()
    closing.join(10)
    assert not closing.is_alive() and c.embedder.calls == 1
    assert c.lock_state is not locks.LockState.EXCLUSIVE  # it resigned


def test_the_standby_keeps_the_store_warm_while_it_stands_by(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    warmed: list[float] = []
    monkeypatch.setattr(standby_module, "warm_store", lambda settings: warmed.append(time.monotonic()) or 0)
    owner = world.owner()
    c = world.candidate(standby_warm_interval_s=0.05)
    c.standby.start()
    assert wait_for(lambda: len(warmed) >= 3, 10)
    owner.kill()
    assert wait_for(lambda: c.own.held, 10)
    time.sleep(0.2)
    n = len(warmed)
    time.sleep(0.3)
    assert len(warmed) == n  # the owner does not warm: only a standing-by standby does
