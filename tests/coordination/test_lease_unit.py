"""clarity.coordination.lease, unit by unit: the record, the epoch, heartbeat, release, refusals and the
standby's pre-locked path. (tests/test_lease.py and tests/test_coordination.py cover a probe never dropping
the lease, maintenance exclusion, the exclusive block, a lost lease never writing, the epoch through a
garbage record, and tests/test_security.py an epoch symlink.)"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clarity import __version__
from clarity.config import load_settings
from clarity.coordination import wire
from clarity.coordination.lease import Lease
from clarity.errors import CoordinationTimeout, UnsafeStore
from clarity.platform import files, locks, processes

pytestmark = pytest.mark.timeout(120)
HOLD = r"""
import sys
from pathlib import Path
from clarity.platform import locks
lock = locks.FileLock(Path(sys.argv[1]))
assert lock.try_lock(sys.argv[2] == "ex")
print("held", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def coord(home: Path) -> Path:
    return load_settings(home).coordination_dir


@pytest.fixture
def hold() -> Iterator[Callable[[Path, str], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, mode: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        started.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in started:
        p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def lease(coord: Path) -> Iterator[Lease]:
    lease = Lease(coord)
    yield lease
    lease.release()


def test_the_record_says_who_owns_and_is_written_privately(lease: Lease, coord: Path) -> None:
    t0 = time.time()
    assert lease.try_acquire("/run/owner.sock", "handoff")
    rec = lease.record
    assert rec is not None
    assert rec == files.read_json(coord / "lease.json")
    assert rec["pid"] == os.getpid() and rec["pid_namespace"] == processes.pid_namespace()
    assert rec["host"] == socket.gethostname() and rec["version"] == __version__
    assert rec["protocol"] == wire.PROTOCOL  # a session reads it before it sends the owner anything
    assert rec["start_time"] == processes.process_start_time(os.getpid())
    assert (rec["socket"], rec["mode"], rec["epoch"], rec["released_at"]) == ("/run/owner.sock", "handoff", 1, None)
    assert t0 <= rec["acquired_at"] == rec["heartbeat_at"] <= time.time()
    for name in ("lease.json", "epoch", "lease.lock", "records.lock"):
        assert stat.S_IMODE((coord / name).stat().st_mode) == 0o600, name
    assert (coord / "epoch").read_bytes() == b"1"
    assert (coord.parent / f"{coord.name}.epoch").read_bytes() == b"1"
    assert locks.probe(coord / "lease.lock") is locks.LockState.EXCLUSIVE
    assert locks.probe(coord / "records.lock") is locks.LockState.SHARED
    assert lease.held and lease.still_held() and lease.epoch == 1


def test_acquiring_again_while_held_changes_nothing(lease: Lease) -> None:
    assert lease.try_acquire(None, "forward")
    record = dict(lease.record or {})
    assert lease.try_acquire(None, "forward")
    assert lease.record == record and lease.epoch == 1
    extra = locks.FileLock(lease.dir / "handed-in.lock")
    assert extra.try_lock(exclusive=True)
    assert lease.try_acquire(None, "forward", locked=extra)  # a lock handed in is closed, not leaked
    assert extra.fd is None and locks.probe(lease.dir / "handed-in.lock") is locks.LockState.FREE


def test_the_epoch_survives_the_deletion_of_the_coordination_folder(lease: Lease, coord: Path) -> None:
    for _ in range(2):
        assert lease.try_acquire(None, "forward")
        lease.release()
    shutil.rmtree(coord)
    assert lease.try_acquire(None, "forward")
    assert lease.epoch == 3
    assert (coord / "epoch").read_bytes() == b"3"


@pytest.mark.parametrize(("epoch", "backup", "record", "expected"), [
    (b"10", b"2", 4, 11), (b"1", b"20", 4, 21), (b"1", b"2", 30, 31), (b"garbage", None, None, 1),
    (None, None, "seven", 1),
])
def test_the_next_epoch_is_one_more_than_the_largest_it_can_find(lease: Lease, coord: Path, epoch: bytes | None,
                                                                 backup: bytes | None, record: object,
                                                                 expected: int) -> None:
    if epoch is not None:
        (coord / "epoch").write_bytes(epoch)
    if backup is not None:
        (coord.parent / f"{coord.name}.epoch").write_bytes(backup)
    if record is not None:
        files.publish_json(coord / "lease.json", {"pid": 1, "epoch": record})
    assert lease.try_acquire(None, "forward")
    assert lease.epoch == expected


def test_heartbeat_refreshes_the_record_on_disk(lease: Lease, coord: Path) -> None:
    assert lease.try_acquire(None, "forward")
    first = (files.read_json(coord / "lease.json") or {})["heartbeat_at"]
    time.sleep(0.02)
    assert lease.heartbeat()
    on_disk = files.read_json(coord / "lease.json") or {}
    assert on_disk["heartbeat_at"] > first and on_disk == lease.record


def test_heartbeat_after_release_or_replacement_writes_nothing(lease: Lease, coord: Path) -> None:
    assert not lease.heartbeat()  # never held
    assert lease.try_acquire(None, "forward")
    lease.release()
    released = (coord / "lease.json").read_bytes()
    assert not lease.heartbeat()
    assert (coord / "lease.json").read_bytes() == released
    assert lease.try_acquire(None, "forward")
    fresh = coord / "fresh"
    fresh.write_bytes(b"")
    os.chmod(fresh, 0o600)
    os.replace(fresh, coord / "lease.lock")  # someone replaced the lock file
    before = (coord / "lease.json").read_bytes()
    assert not lease.still_held()
    assert not lease.heartbeat()
    assert (coord / "lease.json").read_bytes() == before


def test_release_stamps_the_record_keeps_the_epoch_and_frees_both_locks(lease: Lease, coord: Path) -> None:
    assert lease.try_acquire(None, "forward")
    t0 = time.time()
    lease.release()
    rec = files.read_json(coord / "lease.json") or {}
    assert rec["released_at"] >= t0 and rec["epoch"] == 1 and rec["pid"] == os.getpid()
    assert locks.probe(coord / "lease.lock") is locks.LockState.FREE
    assert locks.probe(coord / "records.lock") is locks.LockState.FREE
    assert not lease.held and not lease.still_held()
    lease.release()  # twice is harmless
    assert (files.read_json(coord / "lease.json") or {}) == rec


def test_release_after_losing_the_lock_file_never_touches_a_newer_record(lease: Lease, coord: Path) -> None:
    assert lease.try_acquire(None, "forward")
    fresh = coord / "fresh"
    fresh.write_bytes(b"")
    os.chmod(fresh, 0o600)
    os.replace(fresh, coord / "lease.lock")
    newer = {"pid": 424242, "epoch": 2, "released_at": None}
    files.publish_json(coord / "lease.json", newer)  # the next owner's record
    lease.release()
    assert files.read_json(coord / "lease.json") == newer
    assert locks.probe(coord / "records.lock") is locks.LockState.FREE


def test_refused_while_another_process_holds_the_lease(lease: Lease, coord: Path,
                                                       hold: Callable[[Path, str], subprocess.Popen[str]]) -> None:
    hold(coord / "lease.lock", "ex")
    assert not lease.try_acquire(None, "forward")
    assert lease.refused_by == "lease held by another process" and not lease.held
    assert locks.probe(coord / "records.lock") in (None, locks.LockState.FREE)  # took nothing
    assert not (coord / "lease.json").exists()


def test_refused_during_maintenance_and_lets_go_of_the_lease_lock(lease: Lease, coord: Path,
                                                                  hold: Callable[[Path, str],
                                                                                 subprocess.Popen[str]]) -> None:
    hold(coord / "records.lock", "ex")
    assert not lease.try_acquire(None, "forward")
    assert lease.refused_by is not None and "maintenance in progress" in lease.refused_by
    assert locks.probe(coord / "lease.lock") is locks.LockState.FREE  # not kept while refused
    assert not (coord / "epoch").exists()


def test_the_standbys_pre_locked_lease_lock_is_used_or_released(lease: Lease, coord: Path,
                                                                hold: Callable[[Path, str],
                                                                               subprocess.Popen[str]]) -> None:
    pre = locks.FileLock(coord / "lease.lock")
    assert pre.try_lock(exclusive=True)
    maint = hold(coord / "records.lock", "ex")
    assert not lease.try_acquire(None, "forward", locked=pre)
    assert pre.fd is None and locks.probe(coord / "lease.lock") is locks.LockState.FREE  # closed on failure
    maint.kill()
    maint.wait()
    pre = locks.FileLock(coord / "lease.lock")
    assert pre.try_lock(exclusive=True)
    assert lease.try_acquire(None, "forward", locked=pre)
    assert lease.still_held() and lease.epoch == 1
    lease.release()
    assert pre.fd is None and locks.probe(coord / "lease.lock") is locks.LockState.FREE


def test_a_failed_record_write_releases_both_locks(lease: Lease, coord: Path) -> None:
    (coord / "lease.json").mkdir()  # the record cannot be renamed over a folder
    (coord / "lease.json" / "x").write_bytes(b"")
    with pytest.raises(OSError):
        lease.try_acquire(None, "forward")
    assert not lease.held and not lease.still_held()
    assert locks.probe(coord / "lease.lock") is locks.LockState.FREE
    assert locks.probe(coord / "records.lock") is locks.LockState.FREE


def test_still_held_is_false_once_the_folder_is_replaced(lease: Lease, coord: Path) -> None:
    assert lease.try_acquire(None, "forward")
    assert lease.still_held()
    coord.rename(coord.with_name("moved-away"))
    coord.mkdir(mode=0o700)
    assert not lease.still_held()


def test_an_exclusive_block_needs_the_lease_and_times_out_against_a_reader(
        lease: Lease, coord: Path, hold: Callable[[Path, str], subprocess.Popen[str]]) -> None:
    with pytest.raises(CoordinationTimeout, match="does not own the lease"), lease.exclusive(timeout_s=0.1):
        pass
    assert lease.try_acquire(None, "forward")
    hold(coord / "records.lock", "sh")  # e.g. a stray reader of records.lock
    t0 = time.monotonic()
    with pytest.raises(CoordinationTimeout, match="within 0.3 s"), lease.exclusive(timeout_s=0.3):
        pass
    assert 0.25 <= time.monotonic() - t0 < 3
    assert lease.still_held()  # the refused upgrade kept the shared side (both lock backends promise it)
    assert locks.probe(coord / "records.lock") is locks.LockState.SHARED


def test_a_loose_coordination_folder_is_refused(coord: Path) -> None:
    os.chmod(coord, 0o770)
    lease = Lease(coord)
    with pytest.raises(UnsafeStore, match="writable by group or others"):
        lease.try_acquire(None, "forward")
    assert not lease.held
    assert locks.probe(coord / "lease.lock") in (None, locks.LockState.FREE)
