"""clarity.coordination.maintenance: a block that excludes every owner, with real processes. (tests/test_lease.py
covers: maintenance refuses the lease to others, a live owner makes it time out, a killed owner frees it.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clarity.config import Settings, load_settings
from clarity.coordination.lease import Lease
from clarity.coordination.maintenance import maintenance
from clarity.errors import CoordinationTimeout
from clarity.platform import locks
from tests.harness.scripted import Scripted

pytestmark = pytest.mark.timeout(120)
HOLDER = r"""
import sys
from pathlib import Path
from clarity.coordination.lease import Lease
from clarity.platform import locks
coord, what = Path(sys.argv[1]), sys.argv[2]
if what == "lease":
    lease = Lease(coord)
    assert lease.try_acquire(None, "forward")
    release = lease.release
else:
    name, mode = what.split(":")
    lock = locks.FileLock(coord / name)
    assert lock.try_lock(mode == "ex")
    release = lock.close
print("held", flush=True)
sys.stdin.readline()
release()
print("released", flush=True)
sys.stdin.readline()
"""


class Holder(Scripted):
    def __init__(self, coord: Path, what: str) -> None:
        super().__init__(HOLDER, str(coord), what, ready="held")

    def release(self) -> None:
        assert self.send("") == "released"


@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings(home)


@pytest.fixture
def hold(settings: Settings) -> Iterator[Callable[[str], Holder]]:
    started: list[Holder] = []

    def start(what: str) -> Holder:
        h = Holder(settings.coordination_dir, what)
        started.append(h)
        return h

    yield start
    for h in started:
        h.kill()


def _states(settings: Settings) -> tuple[locks.LockState | None, locks.LockState | None]:
    coord = settings.coordination_dir
    return locks.probe(coord / "records.lock"), locks.probe(coord / "lease.lock")


def test_the_block_holds_both_locks_exclusively_and_releases_them(settings: Settings) -> None:
    with maintenance(settings, timeout_s=1):
        assert _states(settings) == (locks.LockState.EXCLUSIVE, locks.LockState.EXCLUSIVE)
    assert _states(settings) == (locks.LockState.FREE, locks.LockState.FREE)


def test_the_locks_are_released_when_the_block_raises(settings: Settings) -> None:
    with pytest.raises(ValueError, match="restore failed"), maintenance(settings, timeout_s=1):
        raise ValueError("restore failed")
    assert _states(settings) == (locks.LockState.FREE, locks.LockState.FREE)
    lease = Lease(settings.coordination_dir)
    assert lease.try_acquire(None, "forward")
    lease.release()


def test_it_creates_the_coordination_folder_when_missing(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home")
    coord = settings.coordination_dir
    (coord / "waiters").rmdir()
    coord.rmdir()
    with maintenance(settings, timeout_s=1):
        assert coord.is_dir() and (coord / "waiters").is_dir()
        assert coord.stat().st_mode & 0o777 == 0o700


def test_the_timeout_names_the_owner_and_is_kept(settings: Settings, hold: Callable[[str], Holder]) -> None:
    owner = hold("lease")
    t0 = time.monotonic()
    with pytest.raises(CoordinationTimeout) as e, maintenance(settings, timeout_s=0.6):
        pytest.fail("the block ran while an owner held the lease")
    took = time.monotonic() - t0
    assert 0.55 <= took < 3, took
    assert f"owner pid {owner.pid}" in e.value.message and "epoch 1" in e.value.message
    assert "0.6 s" in e.value.message
    assert _states(settings) == (locks.LockState.SHARED, locks.LockState.EXCLUSIVE)  # the owner's, untouched
    t0 = time.monotonic()
    with pytest.raises(CoordinationTimeout), maintenance(settings, timeout_s=0):
        pass
    assert time.monotonic() - t0 < 0.5  # no time at all: one attempt


def test_a_process_half_way_through_taking_the_lease_is_waited_for(settings: Settings,
                                                                   hold: Callable[[str], Holder]) -> None:
    """It holds lease.lock but not yet records.lock: maintenance gets records.lock and must still wait."""
    taker = hold("lease.lock:ex")
    with pytest.raises(CoordinationTimeout), maintenance(settings, timeout_s=0.3):
        pass
    assert _states(settings) == (locks.LockState.FREE, locks.LockState.EXCLUSIVE)  # records.lock let go again
    taker.release()
    with maintenance(settings, timeout_s=1):
        pass


def test_it_waits_for_an_owner_that_leaves_within_the_timeout(settings: Settings,
                                                              hold: Callable[[str], Holder]) -> None:
    owner = hold("lease")
    timer = threading.Timer(0.5, owner.release)
    timer.start()
    t0 = time.monotonic()
    try:
        with maintenance(settings, timeout_s=20):
            took = time.monotonic() - t0
            assert _states(settings) == (locks.LockState.EXCLUSIVE, locks.LockState.EXCLUSIVE)
    finally:
        timer.join()
    assert 0.4 <= took < 5, took


def test_a_reader_of_records_lock_keeps_maintenance_out(settings: Settings, hold: Callable[[str], Holder]) -> None:
    hold("records.lock:sh")
    with pytest.raises(CoordinationTimeout), maintenance(settings, timeout_s=0.3):
        pass
    assert _states(settings)[1] in (None, locks.LockState.FREE)  # it never took the lease lock meanwhile


def test_two_maintenance_blocks_exclude_each_other_even_in_one_process(settings: Settings) -> None:
    with maintenance(settings, timeout_s=1):
        t0 = time.monotonic()
        with pytest.raises(CoordinationTimeout), maintenance(settings, timeout_s=0.3):
            pass
        assert time.monotonic() - t0 < 3
        assert _states(settings) == (locks.LockState.EXCLUSIVE, locks.LockState.EXCLUSIVE)  # the outer still holds
    assert _states(settings) == (locks.LockState.FREE, locks.LockState.FREE)


def test_an_owner_cannot_start_during_the_block_and_starts_after(settings: Settings) -> None:
    lease = Lease(settings.coordination_dir)
    with maintenance(settings, timeout_s=1):
        assert not lease.try_acquire(None, "forward")
        assert lease.refused_by is not None and not lease.held
    assert lease.try_acquire(None, "forward")
    lease.release()
