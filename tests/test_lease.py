"""The lease itself: a lock a probe cannot drop, the records lock that excludes owners, fencing, and
the path for engines that need no lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clarity.config import load_settings
from clarity.coordination.lease import Lease
from clarity.coordination.maintenance import maintenance
from clarity.errors import CoordinationTimeout, NotFound
from clarity.platform import locks
from tests.conftest import cli

GHOST = "00000000-0000-4000-8000-000000000001"
TRY_LEASE = """
import sys
from pathlib import Path
from clarity.coordination.lease import Lease
print("taken" if Lease(Path(sys.argv[1])).try_acquire(None, "forward") else "refused")
"""
HOLD_LEASE = """
import sys, time
from pathlib import Path
from clarity.coordination.lease import Lease
assert Lease(Path(sys.argv[1])).try_acquire(None, "forward"); print("locked", flush=True); time.sleep(600)
"""


def _other_process_takes(coord: Path) -> bool:
    out = subprocess.run([sys.executable, "-c", TRY_LEASE, str(coord)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "taken"


def _hold(coord: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLD_LEASE, str(coord)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_closing_or_probing_lease_lock_in_the_owner_never_drops_it(home: Path) -> None:
    """Regression (issue 7 §3): lease.lock was a POSIX record lock; closing any descriptor of it in the
    owner (status probing it) dropped the kernel lock while `held` stayed true."""
    coord = load_settings(home).coordination_dir
    lease = Lease(coord)
    assert lease.try_acquire(None, "forward")
    try:
        for _ in range(300):
            os.close(os.open(coord / "lease.lock", os.O_RDONLY))  # any other descriptor, opened and closed
            assert locks.probe(coord / "lease.lock") is locks.LockState.EXCLUSIVE  # the probe sees our own lock
        assert lease.still_held()
        assert not _other_process_takes(coord)
    finally:
        lease.release()
    assert _other_process_takes(coord)


def test_maintenance_excludes_every_owner_and_owners_exclude_maintenance(home: Path) -> None:
    settings = load_settings(home)
    coord = settings.coordination_dir
    with maintenance(settings, timeout_s=1):
        assert locks.probe(coord / "records.lock") is locks.LockState.EXCLUSIVE
        assert not _other_process_takes(coord)
        lease = Lease(coord)
        assert not lease.try_acquire(None, "forward") and "maintenance" in (lease.refused_by or "")
    p = _hold(coord)
    try:
        assert locks.probe(coord / "records.lock") is locks.LockState.SHARED  # the owner's tenure
        t0 = time.monotonic()
        with pytest.raises(CoordinationTimeout, match="in use"), maintenance(settings, timeout_s=0.5):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        p.kill()
        p.wait()
    with maintenance(settings, timeout_s=5):  # a killed owner frees both locks at once
        pass


def test_owner_exclusive_block_upgrades_and_downgrades(home: Path) -> None:
    settings = load_settings(home)
    lease = Lease(settings.coordination_dir)
    assert lease.try_acquire(None, "forward")
    try:
        with lease.exclusive(timeout_s=2):
            assert locks.probe(lease.records_path) is locks.LockState.EXCLUSIVE
        assert locks.probe(lease.records_path) is locks.LockState.SHARED and lease.still_held()
    finally:
        lease.release()
    assert locks.probe(lease.records_path) is locks.LockState.FREE


def test_a_process_that_lost_the_lease_never_applies_another_write(home: Path) -> None:
    """Regression (issue 7 §3): an owner whose lease.lock was replaced kept applying writes while
    another process took the lease."""
    from clarity.coordination.coordinator import Coordinator

    settings = load_settings(home)
    settings.coordination.call_deadline_s = 2
    coordinator = Coordinator(settings)
    holder = None
    try:
        coordinator.call("stats", {})
        assert coordinator.lease.held
        os.unlink(settings.coordination_dir / "lease.lock")  # e.g. someone cleaned the folder
        holder = _hold(settings.coordination_dir)  # and another process took the new lease
        with pytest.raises(CoordinationTimeout):
            coordinator.call("store", {"id": GHOST, "content": "written after losing the lease"})
        assert not coordinator.lease.held
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    try:
        with pytest.raises(NotFound):
            coordinator.call("get", {"memory_id": GHOST})
    finally:
        coordinator.close()


def test_a_shared_engine_runs_every_call_here_without_a_lease(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Qdrant server needs no turns: no lease, no socket, no record (engine_is_exclusive is False).
    The engine here is still the local one: only the coordination path is under test."""
    from clarity.coordination import coordinator as mod

    monkeypatch.setattr(mod, "engine_is_exclusive", lambda _s: False)
    settings = load_settings(home)
    coordinator = mod.Coordinator(settings)
    try:
        assert coordinator.call("list", {"limit": 1})["total"] == 0
        assert coordinator.status()["this_process"]["role"] == "direct"
        coord = settings.coordination_dir
        assert locks.probe(coord / "lease.lock") in (None, locks.LockState.FREE)
        assert not (coord / "lease.json").exists() and not (coord / "owner.sock").exists()
        assert coordinator.status()["owner"] is None
    finally:
        coordinator.close()


HOLD_RECORDS = """
import sys, time
from pathlib import Path
from clarity.platform.locks import try_lock_file
held = try_lock_file(Path(sys.argv[1]))
assert held is not None
print("locked", flush=True)
time.sleep(600)
"""


def test_a_stopped_process_holding_the_records_lock_blocks_neither_status_nor_calls(home: Path) -> None:
    """Regression: status read lease.json under records.lock, so an owner frozen mid-heartbeat (or any
    stopped holder) blocked `clarity status` and every call's error message until it was thawed
    (a chaos call lasted 5.09 s against a 3 s deadline)."""
    coord = load_settings(home).coordination_dir
    p = subprocess.Popen([sys.executable, "-c", HOLD_RECORDS, str(coord / "records.lock")], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        os.kill(p.pid, signal.SIGSTOP)
        out = cli(home, "status", "--json", timeout=60)
        assert out.returncode == 0 and '"owner": null' in out.stdout
        t0 = time.monotonic()
        out = cli(home, "list", check=False, env={"CLARITY_CALL_DEADLINE_S": "2"}, timeout=60)
        assert out.returncode != 0 and "maintenance in progress" in out.stderr
        assert time.monotonic() - t0 < 30  # interpreter start-up plus the 2 s deadline, on a busy machine
    finally:
        p.kill()
        p.wait()
