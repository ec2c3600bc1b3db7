"""clarity.platform.locks, every test against both backends (`ofd` and `flock`), with a real second
process holding the lock through the same backend."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clarity.platform import locks
from clarity.platform.locks import FileLock, LockState
from tests.harness.scripted import Scripted

pytestmark = pytest.mark.timeout(120)

HOLDER = r"""
import sys
from pathlib import Path
from clarity.platform import locks
path, backend = Path(sys.argv[1]), sys.argv[2]
locks._backend = locks._Ofd() if backend == "ofd" else locks._Flock()
locks.BACKEND = backend
lock = locks.FileLock(path)
print("ready", locks._backend.name, flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "probe":
        state = locks.probe(path)
        print(state.value if state else "none", flush=True)
        continue
    if cmd == "ex":
        ok = lock.try_lock(True)
    elif cmd == "sh":
        ok = lock.try_lock(False)
    elif cmd == "close":
        lock.close()
        ok = True
    else:
        break
    print("ok" if ok else "refused", flush=True)
"""


class Holder(Scripted):
    """Another process with one FileLock on `path`, driven line by line: ex, sh, close, probe."""

    def __init__(self, path: Path, backend: str) -> None:
        super().__init__(HOLDER, str(path), backend, ready=f"ready {backend}")


@pytest.fixture(params=["ofd", "flock"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "ofd" and not all(hasattr(fcntl, n) for n in locks._OFD_NAMES):
        pytest.skip("this interpreter's fcntl has no F_OFD_* commands (macOS, the BSDs, tests/harness/bsd_python)")
    monkeypatch.setattr(locks, "_backend", locks._Ofd() if name == "ofd" else locks._Flock())
    monkeypatch.setattr(locks, "BACKEND", name)
    return name


@pytest.fixture
def holder(backend: str) -> Iterator[Callable[[Path], Holder]]:
    started: list[Holder] = []

    def start(path: Path) -> Holder:
        h = Holder(path, backend)
        started.append(h)
        return h

    yield start
    for h in started:
        h.kill()


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "lease.lock"


def _state(lock: FileLock) -> LockState:
    return lock.state


def test_probe_sees_free_shared_and_exclusive(backend: str, lock_path: Path, holder: Callable[[Path], Holder]) -> None:
    assert locks.probe(lock_path) is None  # missing
    a, b = holder(lock_path), holder(lock_path)
    assert locks.probe(lock_path) is None  # a FileLock creates its file only when it first locks
    assert a.send("sh") == "ok" and a.send("close") == "ok"
    assert locks.probe(lock_path) is LockState.FREE
    assert a.send("sh") == "ok"
    assert locks.probe(lock_path) is LockState.SHARED
    assert b.send("sh") == "ok"
    assert locks.probe(lock_path) is LockState.SHARED
    assert a.send("close") == "ok"
    assert locks.probe(lock_path) is LockState.SHARED  # b still reads
    assert b.send("close") == "ok"
    assert locks.probe(lock_path) is LockState.FREE
    assert a.send("ex") == "ok"
    assert locks.probe(lock_path) is LockState.EXCLUSIVE
    assert b.send("sh") == "refused" and b.send("ex") == "refused"
    assert locks.probe(lock_path) is LockState.EXCLUSIVE  # the refused attempts changed nothing


def test_probe_answers_none_for_links_and_never_blocks_on_a_fifo(backend: str, lock_path: Path,
                                                                 holder: Callable[[Path], Holder]) -> None:
    h = holder(lock_path)
    assert h.send("ex") == "ok"
    link = lock_path.with_name("link.lock")
    link.symlink_to(lock_path)
    assert locks.probe(link) is None
    fifo = lock_path.with_name("fifo.lock")
    os.mkfifo(fifo)
    t0 = time.monotonic()
    assert locks.probe(fifo) is None
    assert time.monotonic() - t0 < 5


def test_probing_from_the_holders_own_process_never_drops_its_lock(backend: str, lock_path: Path,
                                                                   holder: Callable[[Path], Holder]) -> None:
    lock = FileLock(lock_path)
    assert lock.try_lock(exclusive=True)
    other = holder(lock_path)
    try:
        for _ in range(200):
            assert locks.probe(lock_path) is LockState.EXCLUSIVE
            os.close(os.open(lock_path, os.O_RDONLY))  # any other descriptor of the file, opened and closed
        for _ in range(20):
            assert other.send("probe") == "exclusive"  # and another process's probe
        assert other.send("sh") == "refused" and other.send("ex") == "refused"
        assert lock.still_ours()
        assert lock.try_lock(exclusive=False)  # downgrade, then the same with a shared lock
        for _ in range(200):
            assert locks.probe(lock_path) is LockState.SHARED
        for _ in range(20):
            assert other.send("probe") == "shared"
        assert other.send("ex") == "refused"
        assert other.send("sh") == "ok" and other.send("close") == "ok"
        assert other.send("ex") == "refused"  # our shared lock survived all of it
    finally:
        lock.close()
    assert other.send("ex") == "ok"


@pytest.mark.parametrize("mode", ["ex", "sh"])
def test_a_killed_holder_frees_the_lock_at_once(backend: str, lock_path: Path, holder: Callable[[Path], Holder],
                                                mode: str) -> None:
    h = holder(lock_path)
    assert h.send(mode) == "ok"
    assert locks.try_lock_file(lock_path) is None
    h.kill()
    assert locks.probe(lock_path) is LockState.FREE  # no waiting, no polling
    taken = locks.try_lock_file(lock_path)
    assert taken is not None and taken.state is LockState.EXCLUSIVE
    taken.close()


def test_two_filelocks_in_one_process_conflict_like_two_processes(backend: str, lock_path: Path) -> None:
    a, b = FileLock(lock_path), FileLock(lock_path)
    try:
        assert a.try_lock(exclusive=True)
        assert not b.try_lock(exclusive=True) and not b.try_lock(exclusive=False)
        assert b.fd is None and _state(b) is LockState.FREE  # a refused lock keeps no descriptor
        assert a.try_lock(exclusive=False)
        assert b.try_lock(exclusive=False)  # two readers
        assert not b.try_lock(exclusive=True)  # no upgrade while the other reads
        assert _state(b) is LockState.SHARED and b.still_ours()
        a.close()
        assert b.try_lock(exclusive=True) and b.state is LockState.EXCLUSIVE
        assert not a.try_lock(exclusive=False)
    finally:
        a.close()
        b.close()


def test_refused_attempts_leak_no_descriptors(backend: str, lock_path: Path) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts descriptors through /proc/self/fd")
    owner = FileLock(lock_path)
    assert owner.try_lock(exclusive=True)
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            assert locks.try_lock_file(lock_path) is None
            assert locks.probe(lock_path) is LockState.EXCLUSIVE
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        owner.close()


def test_still_ours_is_false_once_the_file_is_replaced_or_removed(backend: str, lock_path: Path) -> None:
    lock = FileLock(lock_path)
    assert not lock.still_ours()  # never locked
    assert lock.try_lock(exclusive=True) and lock.still_ours()
    fresh = lock_path.with_name("fresh")
    fresh.write_bytes(b"")
    os.chmod(fresh, 0o600)
    os.replace(fresh, lock_path)
    assert not lock.still_ours()
    newcomer = locks.try_lock_file(lock_path)  # the replacement is a new file, free to lock
    assert newcomer is not None and newcomer.still_ours()
    newcomer.close()
    lock.close()
    assert lock.try_lock(exclusive=False) and lock.still_ours()
    lock_path.unlink()
    assert not lock.still_ours()
    lock.close()
    assert not lock.still_ours() and lock.fd is None


def test_acquire_respects_its_deadline(backend: str, lock_path: Path, holder: Callable[[Path], Holder]) -> None:
    h = holder(lock_path)
    assert h.send("ex") == "ok"
    lock = FileLock(lock_path)
    t0 = time.monotonic()
    assert not lock.acquire(exclusive=False, deadline=t0 + 0.4)
    took = time.monotonic() - t0
    assert 0.39 <= took < 2.0, took
    t0 = time.monotonic()
    assert not lock.acquire(exclusive=True, deadline=t0 - 1)  # already past: one attempt
    assert time.monotonic() - t0 < 0.5
    assert lock.fd is None

    def release_soon() -> None:
        time.sleep(0.3)
        h.send("close")

    releaser = threading.Thread(target=release_soon)
    releaser.start()
    t0 = time.monotonic()
    try:
        assert lock.acquire(exclusive=True, deadline=t0 + 30)
        assert time.monotonic() - t0 < 10  # polled: taken soon after the holder let go, not at the deadline
        assert lock.state is LockState.EXCLUSIVE
    finally:
        releaser.join()
        lock.close()


def test_wait_returns_when_the_holder_dies(backend: str, lock_path: Path, holder: Callable[[Path], Holder]) -> None:
    h = holder(lock_path)
    assert h.send("ex") == "ok"
    lock = FileLock(lock_path)
    done = threading.Event()

    def waiter() -> None:
        lock.wait(exclusive=True)
        done.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    try:
        assert not done.wait(0.5), "wait returned while another process held the lock"
        h.kill()
        assert done.wait(10), "wait did not return when the holder died"
        assert lock.state is LockState.EXCLUSIVE and lock.still_ours()
        other = holder(lock_path)
        assert other.send("sh") == "refused"
    finally:
        h.kill()
        t.join(10)
        lock.close()


def test_a_shared_wait_does_not_wait_for_another_reader(backend: str, lock_path: Path,
                                                        holder: Callable[[Path], Holder]) -> None:
    h = holder(lock_path)
    assert h.send("sh") == "ok"
    lock = FileLock(lock_path)
    t = threading.Thread(target=lock.wait, args=(False,), daemon=True)
    t.start()
    t.join(5)
    try:
        assert not t.is_alive() and lock.state is LockState.SHARED
    finally:
        h.kill()
        t.join(10)
        lock.close()


def test_a_refused_upgrade_keeps_the_shared_lock(backend: str, lock_path: Path,
                                                 holder: Callable[[Path], Holder]) -> None:
    """Both backends: after a refused upgrade we still hold the shared lock (ofd: never dropped; flock:
    taken back), so a writer stays out until we let go."""
    reader, writer = holder(lock_path), holder(lock_path)
    assert reader.send("sh") == "ok"
    lock = FileLock(lock_path)
    try:
        assert lock.try_lock(exclusive=False)
        assert not lock.try_lock(exclusive=True)
        assert lock.state is LockState.SHARED and lock.still_ours() and lock.fd is not None
        assert reader.send("close") == "ok"
        assert locks.probe(lock_path) is LockState.SHARED
        assert writer.send("ex") == "refused"
        assert lock.try_lock(exclusive=True)  # the reader left: the upgrade goes through
        assert writer.send("sh") == "refused"
        assert lock.try_lock(exclusive=False)  # and the downgrade
        assert writer.send("sh") == "ok"
    finally:
        lock.close()


def test_a_writer_slipping_in_during_a_refused_upgrade(backend: str, lock_path: Path, holder: Callable[[Path], Holder],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The instant after the kernel refuses our upgrade, the other reader leaves and a writer asks for the
    exclusive lock. ofd converts atomically: the writer is refused, we keep our shared lock. flock has
    already released our shared lock: the writer gets in, taking the old lock back is refused, and the
    lock is reported lost (state FREE, descriptor closed, still_ours() false)."""
    reader, writer = holder(lock_path), holder(lock_path)
    assert reader.send("sh") == "ok"
    lock = FileLock(lock_path)
    assert lock.try_lock(exclusive=False)
    slipped: list[str] = []
    base = type(locks._backend)

    class SlipIn(base):  # type: ignore[valid-type, misc]
        def take(self, fd: int, exclusive: bool) -> bool:
            ok: bool = super().take(fd, exclusive)
            if exclusive and not ok and not slipped:
                reader.send("close")
                slipped.append(writer.send("ex"))
            return ok

    monkeypatch.setattr(locks, "_backend", SlipIn())
    try:
        with caplog.at_level(logging.WARNING, logger="clarity.platform.locks"):
            assert not lock.try_lock(exclusive=True)
        if backend == "ofd":
            assert slipped == ["refused"]
            assert lock.state is LockState.SHARED and lock.still_ours()
            assert locks.probe(lock_path) is LockState.SHARED
            assert "lost" not in caplog.text
        else:
            assert slipped == ["ok"], "flock kept the old lock through a refused conversion"
            assert lock.state is LockState.FREE and lock.fd is None and not lock.still_ours()
            assert locks.probe(lock_path) is LockState.EXCLUSIVE  # the writer's
            assert "lost while converting" in caplog.text
    finally:
        lock.close()


def test_lock_fd_takes_a_fresh_file_and_refuses_a_held_one(backend: str, lock_path: Path) -> None:
    fd1 = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fd2 = os.open(lock_path, os.O_RDWR)
    try:
        assert locks.lock_fd(fd1, exclusive=True)
        assert not locks.lock_fd(fd2, exclusive=True) and not locks.lock_fd(fd2, exclusive=False)
        assert locks.probe(lock_path) is LockState.EXCLUSIVE
    finally:
        os.close(fd1)
        os.close(fd2)
    assert locks.probe(lock_path) is LockState.FREE


def test_try_lock_file_creates_a_private_file_and_refuses_a_held_one(backend: str, tmp_path: Path,
                                                                     holder: Callable[[Path], Holder]) -> None:
    path = tmp_path / "standby.lock"
    old = os.umask(0)
    try:
        lock = locks.try_lock_file(path, exclusive=False)
    finally:
        os.umask(old)
    assert lock is not None and lock.state is LockState.SHARED
    assert path.stat().st_mode & 0o777 == 0o600
    h = holder(path)
    assert h.send("sh") == "ok"
    assert locks.try_lock_file(path) is None  # exclusive refused while anyone reads
    lock.close()
    assert h.send("close") == "ok"
    taken = locks.try_lock_file(path)
    assert taken is not None
    assert h.send("sh") == "refused"
    taken.close()


def test_a_lock_never_follows_a_link(backend: str, tmp_path: Path) -> None:
    target = tmp_path / "target.lock"
    target.write_bytes(b"")
    link = tmp_path / "link.lock"
    link.symlink_to(target)
    with pytest.raises(OSError):
        FileLock(link).try_lock(exclusive=True)
    assert locks.probe(target) is LockState.FREE
    dangling = tmp_path / "dangling.lock"
    dangling.symlink_to(tmp_path / "created.lock")
    with pytest.raises(OSError):
        locks.try_lock_file(dangling)
    assert not (tmp_path / "created.lock").exists()
