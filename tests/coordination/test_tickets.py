"""clarity.coordination.tickets: waiter tickets with real processes holding them. (tests/test_security.py
covers a `waiters` symlink under cleanup and FIFOs, links and folders among the tickets.)"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from clarity.coordination import tickets
from clarity.errors import UnsafeStore
from clarity.platform import locks, processes
from tests.harness.scripted import Scripted

pytestmark = pytest.mark.timeout(120)
NAME = re.compile(r"^\d{20}-(\d+)-[0-9a-f]{8}\.json$")
WAITER = r"""
import sys
from pathlib import Path
from clarity.coordination import tickets
t = tickets.add(Path(sys.argv[1]))
print(t.path.name, flush=True)
if sys.stdin.readline().strip() == "remove":
    t.remove()
    print("removed", flush=True)
    sys.stdin.readline()
"""
CHURN = r"""
import sys, time
from pathlib import Path
from clarity.coordination import tickets
print("go", flush=True)
end, i = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end:  # for a while, not a count: a fast machine must still be watched doing it
    t = tickets.add(Path(sys.argv[1]))
    if i % 2:
        time.sleep(0.001)  # every other ticket lives long enough to be seen for sure
    t.remove()
    i += 1
"""


class Waiter(Scripted):
    def __init__(self, waiters: Path) -> None:
        super().__init__(WAITER, str(waiters), ready=NAME)
        self.name = self.first

    def remove(self) -> None:
        assert self.send("remove") == "removed"


@pytest.fixture
def waiters(tmp_path: Path) -> Path:
    return tmp_path / "waiters"


@pytest.fixture
def waiter(waiters: Path) -> Iterator[Callable[[], Waiter]]:
    started: list[Waiter] = []

    def start() -> Waiter:
        w = Waiter(waiters)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def test_a_ticket_is_named_locked_and_describes_its_waiter(waiters: Path) -> None:
    old = os.umask(0)
    try:
        t = tickets.add(waiters)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(waiters.stat().st_mode) == 0o700  # created private
        m = NAME.match(t.path.name)
        assert m and int(m.group(1)) == os.getpid() and t.path.parent == waiters
        assert os.listdir(waiters) == [t.path.name]  # no hidden temp file left
        assert locks.probe(t.path) is locks.LockState.EXCLUSIVE
        st = t.path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_dev, st.st_ino) == t.ident
        data = orjson.loads(t.path.read_bytes())
        assert data["pid"] == os.getpid() and data["pid_namespace"] == processes.pid_namespace()
        assert abs(data["since"] - time.time()) < 60
    finally:
        t.remove()
    assert os.listdir(waiters) == []
    with pytest.raises(OSError):
        os.fstat(t.fd)  # the descriptor, and with it the lock, is gone


def test_live_lists_other_processes_oldest_first_and_marks_our_own(waiters: Path,
                                                                   waiter: Callable[[], Waiter]) -> None:
    first, second = waiter(), waiter()
    mine = tickets.add(waiters)
    third = waiter()
    try:
        listed = tickets.live(waiters, exclude=mine.path)
        assert [e["ticket"] for e in listed] == [first.name, second.name, mine.path.name, third.name]
        assert [e["pid"] for e in listed] == [first.pid, second.pid, os.getpid(), third.pid]
        assert [e["own"] for e in listed] == [False, False, True, False]
        assert all(isinstance(e["since"], float) for e in listed if not e["own"])
        assert [e["pid"] for e in tickets.live(waiters)] == [first.pid, second.pid, os.getpid(), third.pid]
    finally:
        mine.remove()


def test_a_killed_waiters_ticket_is_stale_and_cleaned_but_a_live_one_never(waiters: Path,
                                                                           waiter: Callable[[], Waiter]) -> None:
    dead, alive = waiter(), waiter()
    dead.kill()
    assert [e["pid"] for e in tickets.live(waiters)] == [alive.pid]  # at once: its lock died with it
    removed = tickets.cleanup_stale(waiters)
    assert removed == [f"waiter ticket {dead.name}"]
    assert sorted(os.listdir(waiters)) == [alive.name]
    assert tickets.cleanup_stale(waiters) == []
    alive.remove()
    assert os.listdir(waiters) == []


def test_cleanup_never_removes_our_own_ticket(waiters: Path) -> None:
    mine = tickets.add(waiters)
    try:
        assert tickets.cleanup_stale(waiters, own=mine.path) == []
        assert tickets.cleanup_stale(waiters) == []  # locked: not stale either
        assert mine.path.exists()
    finally:
        mine.remove()


def test_hidden_temp_files_are_removed_only_when_old_and_unlocked(waiters: Path) -> None:
    waiters.mkdir(mode=0o700)
    fresh = waiters / ".00000000000000000001-1-aaaaaaaa.json.tmp"
    old = waiters / ".00000000000000000002-1-bbbbbbbb.json.tmp"
    old_locked = waiters / ".00000000000000000003-1-cccccccc.json.tmp"
    for p in (fresh, old, old_locked):
        p.write_bytes(b"")
        os.chmod(p, 0o600)
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    os.utime(old_locked, (hour_ago, hour_ago))
    held = locks.try_lock_file(old_locked)
    assert held is not None
    try:
        assert tickets.live(waiters) == []  # hidden names are never waiters
        assert tickets.cleanup_stale(waiters) == [f"waiter ticket {old.name}"]
        assert sorted(os.listdir(waiters)) == sorted([fresh.name, old_locked.name])
    finally:
        held.close()


def test_remove_leaves_a_file_that_replaced_the_ticket(waiters: Path) -> None:
    t = tickets.add(waiters)
    other = waiters / "other"
    other.write_bytes(b"someone else's")
    os.replace(other, t.path)
    t.remove()
    assert t.path.read_bytes() == b"someone else's"
    with pytest.raises(OSError):
        os.fstat(t.fd)


def test_a_ticket_is_never_visible_unlocked(waiters: Path) -> None:
    """Another process adds and removes tickets as fast as it can; every ticket seen here under its final
    name, and still there after the probe, is locked."""
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(waiters), "1.5"], stdout=subprocess.PIPE, text=True)
    seen = 0
    try:
        assert churn.stdout is not None and churn.stdout.readline().strip() == "go"
        while churn.poll() is None:
            try:
                names = [n for n in os.listdir(waiters) if not n.startswith(".")]
            except FileNotFoundError:
                continue
            for name in names:
                path = waiters / name
                try:
                    before = os.lstat(path).st_ino
                    state = locks.probe(path)
                    after = os.lstat(path).st_ino
                except FileNotFoundError:
                    continue  # removed meanwhile (removal unlinks before it unlocks)
                seen += 1
                assert not (state is locks.LockState.FREE and before == after), f"{name} was visible unlocked"
        assert churn.wait(60) == 0
    finally:
        churn.kill()
        churn.wait()
    assert seen > 0, "never saw a ticket: the test proved nothing"
    assert [n for n in os.listdir(waiters) if not n.startswith(".")] == []


def test_a_missing_waiters_folder_means_no_waiters_and_is_not_created(waiters: Path) -> None:
    assert tickets.live(waiters) == []
    assert tickets.cleanup_stale(waiters) == []
    assert not waiters.exists()


def test_a_linked_or_loose_waiters_folder_is_refused_by_every_operation(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "waiters"
    link.symlink_to(real)
    for op in (tickets.add, tickets.live, tickets.cleanup_stale):
        with pytest.raises(UnsafeStore, match="symlink"):
            op(link)
    assert os.listdir(real) == []  # nothing was created through the link
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    for op in (tickets.add, tickets.live, tickets.cleanup_stale):
        with pytest.raises(UnsafeStore, match="writable by group or others"):
            op(loose)
    assert os.listdir(loose) == []


def test_a_foreign_ticket_is_skipped_and_never_removed(waiters: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user (os.chown)")
    waiters.mkdir(mode=0o700)
    planted = waiters / "00000000000000000001-1-deadbeef.json"
    planted.write_bytes(b'{"pid": 1}')
    os.chown(planted, 65534, 65534)
    assert tickets.live(waiters) == []
    assert tickets.cleanup_stale(waiters) == []
    assert planted.exists()


def test_a_locked_ticket_with_garbage_content_is_listed_without_a_pid(waiters: Path) -> None:
    waiters.mkdir(mode=0o700)
    path = waiters / "00000000000000000001-1-deadbeef.json"
    held = locks.try_lock_file(path)
    assert held is not None
    try:
        os.write(held.fd or -1, b"\x00garbage")
        assert tickets.live(waiters) == [{"ticket": path.name, "pid": None, "since": None, "own": False}]
    finally:
        held.close()
    assert tickets.live(waiters) == []
