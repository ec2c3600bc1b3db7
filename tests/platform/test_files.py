"""clarity.platform.files: private folders, no-follow opens, the atomic durable publish, durable syncs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from clarity.errors import UnsafeStore
from clarity.platform import files

FOREIGN_UID = 65534  # nobody


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user (os.chown)")


def _entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ---- publish ---------------------------------------------------------------------------------

def test_publish_writes_a_private_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    old = os.umask(0)
    try:
        files.publish(target, b"first")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # even with umask 0
    ino = target.stat().st_ino
    files.publish(target, b"second, longer than the first")
    assert target.read_bytes() == b"second, longer than the first"
    assert target.stat().st_ino != ino  # a new file renamed over the old one, not a rewrite in place
    assert _entries(tmp_path) == ["record.json"]


def test_publish_of_large_and_empty_content(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    big = os.urandom(3 << 20)
    files.publish(target, big)
    assert target.read_bytes() == big
    files.publish(target, b"")
    assert target.read_bytes() == b""
    assert _entries(tmp_path) == ["blob"]


def test_publish_replaces_a_symlink_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    target = tmp_path / "epoch"
    target.symlink_to(victim)
    files.publish(target, b"7")
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink() and target.read_bytes() == b"7"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "would-be-created")
    files.publish(dangling, b"x")
    assert not (tmp_path / "would-be-created").exists() and not dangling.is_symlink()


def test_a_failed_rename_leaves_no_temp_file_and_the_target_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()  # a non-empty folder where the file should go: the rename over it fails
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        files.publish(target, b"new")
    assert _entries(tmp_path) == ["target"]
    assert target.is_dir() and (target / "inside").read_bytes() == b"kept"


def test_a_failed_write_or_sync_leaves_no_temp_file_and_the_old_content(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "lease.json"
    files.publish(target, b"old")

    def broken_sync(fd: int) -> None:
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(files, "sync_fd", broken_sync)
    with pytest.raises(OSError, match="simulated"):
        files.publish(target, b"new")
    assert target.read_bytes() == b"old" and _entries(tmp_path) == ["lease.json"]

    def interrupted_sync(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "sync_fd", interrupted_sync)
    with pytest.raises(KeyboardInterrupt):
        files.publish(target, b"new")
    assert target.read_bytes() == b"old" and _entries(tmp_path) == ["lease.json"]


def test_publish_into_a_missing_folder_fails_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.publish(tmp_path / "missing" / "file", b"x")
    assert _entries(tmp_path) == []


def test_publish_never_opens_its_temp_file_through_a_planted_link(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who guessed the temp name and planted a link there: the O_EXCL open refuses it."""

    class Fixed:
        hex = "0123456789abcdef"

    monkeypatch.setattr(uuid, "uuid4", lambda: Fixed())
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "target"
    (tmp_path / f".target.{os.getpid()}.01234567.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        files.publish(target, b"new")
    assert victim.read_bytes() == b"precious" and not target.exists()


def test_publish_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    files.publish(target, b"old")
    seen: list[tuple[str, bytes]] = []
    real_sync_fd, real_sync_dir = files.sync_fd, files.sync_dir

    def spy_fd(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # sync_dir syncs the folder's descriptor through it too
            seen.append(("file", target.read_bytes()))
        real_sync_fd(fd)

    def spy_dir(path: Path) -> None:
        assert path == tmp_path
        seen.append(("folder", target.read_bytes()))
        real_sync_dir(path)

    monkeypatch.setattr(files, "sync_fd", spy_fd)
    monkeypatch.setattr(files, "sync_dir", spy_dir)
    files.publish(target, b"new")
    assert seen == [("file", b"old"), ("folder", b"new")]


WRITER = """
import sys
from pathlib import Path
from clarity.platform import files
target, n = Path(sys.argv[1]), int(sys.argv[2])
a, b = b"A" * 300_000, b"B" * 200_000
print("start", flush=True)
for i in range(n):
    files.publish(target, a if i % 2 else b)
"""


def test_a_reader_never_sees_half_a_published_file(tmp_path: Path) -> None:
    """Another process publishes two contents of different lengths in turn while this one reads."""
    target = tmp_path / "shared"
    files.publish(target, b"A" * 300_000)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), "300"], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "start"
        reads, kinds = 0, set()
        while writer.poll() is None or reads < 50:
            data = target.read_bytes()
            reads += 1
            assert data in (b"A" * 300_000, b"B" * 200_000), f"a reader saw {len(data)} bytes"
            kinds.add(data[:1])
            if reads > 200_000:
                break
        assert writer.wait(timeout=120) == 0
        assert kinds == {b"A", b"B"}, "the reader never saw the writer's publishes"
    finally:
        writer.kill()
        writer.wait()
    assert _entries(tmp_path) == ["shared"]


# ---- json and no-follow reads ------------------------------------------------------------------

def test_publish_json_and_read_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "lease.json"
    record: dict[str, Any] = {"pid": 12, "epoch": 3, "socket": None, "host": "h\u00e9", "n": [1.5, True]}
    files.publish_json(path, record)
    assert files.read_json(path) == record
    assert orjson.loads(path.read_bytes()) == record


def test_read_json_answers_none_for_anything_but_a_json_object_in_a_regular_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(b'{"pid": 1}')
    assert files.read_json(tmp_path / "missing.json") is None
    (tmp_path / "garbage.json").write_bytes(b"{not json")
    assert files.read_json(tmp_path / "garbage.json") is None
    (tmp_path / "list.json").write_bytes(b"[1, 2]")
    assert files.read_json(tmp_path / "list.json") is None
    (tmp_path / "link.json").symlink_to(good)
    assert files.read_json(tmp_path / "link.json") is None  # a link is never followed
    (tmp_path / "dir.json").mkdir()
    assert files.read_json(tmp_path / "dir.json") is None
    os.mkfifo(tmp_path / "fifo.json")
    t0 = time.monotonic()
    assert files.read_json(tmp_path / "fifo.json") is None  # and a FIFO never blocks the read
    assert time.monotonic() - t0 < 5
    assert files.read_json(good) == {"pid": 1}


def test_read_bytes_nofollow_respects_its_limit_and_refuses_links(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"0123456789")
    assert files.read_bytes_nofollow(path, 4) == b"0123"
    assert files.read_bytes_nofollow(path) == b"0123456789"
    (tmp_path / "link").symlink_to(path)
    assert files.read_bytes_nofollow(tmp_path / "link") is None


def test_a_foreign_file_is_refused_by_every_reader(tmp_path: Path) -> None:
    _needs_root()
    path = tmp_path / "planted.json"
    path.write_bytes(b'{"pid": 1}')
    os.chown(path, FOREIGN_UID, FOREIGN_UID)
    assert files.read_bytes_nofollow(path) is None
    assert files.read_json(path) is None
    with pytest.raises(UnsafeStore, match="not a regular file of this user"):
        files.open_nofollow(path, os.O_RDONLY)


def test_open_nofollow_refuses_links_and_non_regular_files(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        files.open_nofollow(tmp_path / "link", os.O_RDONLY)
    (tmp_path / "dangling").symlink_to(tmp_path / "created")
    with pytest.raises(OSError):  # O_CREAT through a dangling link creates nothing
        files.open_nofollow(tmp_path / "dangling", os.O_RDWR | os.O_CREAT)
    assert not (tmp_path / "created").exists()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafeStore):
        files.open_nofollow(tmp_path / "fifo", os.O_RDONLY)
    fd = files.open_nofollow(tmp_path / "new", os.O_RDWR | os.O_CREAT)
    try:
        assert os.get_inheritable(fd) is False  # O_CLOEXEC: a child process never inherits it
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600 & ~_umask()
    finally:
        os.close(fd)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_unlink_quiet_removes_a_link_never_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"kept")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert files.unlink_quiet(link) is True
    assert files.unlink_quiet(link) is False
    assert target.read_bytes() == b"kept"
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert files.unlink_quiet(Path("target"), dir_fd=dfd) is True
    finally:
        os.close(dfd)
    assert _entries(tmp_path) == []


# ---- private folders -------------------------------------------------------------------------

def test_ensure_private_dir_creates_0700_and_is_idempotent_and_race_safe(tmp_path: Path) -> None:
    folder = tmp_path / "home"
    old = os.umask(0)
    try:
        errors: list[BaseException] = []

        def make() -> None:
            try:
                files.ensure_private_dir(folder)
            except BaseException as e:  # noqa: B036 - collected for the assertion below
                errors.append(e)

        threads = [threading.Thread(target=make) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert errors == []
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files.check_private_dir(folder)


def test_a_symlinked_folder_is_refused_even_when_it_points_to_a_private_one(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafeStore, match="symlink") as e:
        files.check_private_dir(link, "store folder")
    assert str(link) in e.value.message and "Fix:" in e.value.message
    with pytest.raises(UnsafeStore, match="symlink"):
        files.ensure_private_dir(link)


def test_a_group_or_world_writable_folder_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    for mode in (0o770, 0o702, 0o777):
        folder = tmp_path / f"loose{mode:o}"
        folder.mkdir()
        os.chmod(folder, mode)
        with pytest.raises(UnsafeStore, match="writable by group or others") as e:
            files.ensure_private_dir(folder, "waiters folder")
        assert f"{mode:04o}" in e.value.message and "waiters folder" in e.value.message
        assert stat.S_IMODE(folder.stat().st_mode) == mode  # never silently chmodded
    readable = tmp_path / "readable"
    readable.mkdir()
    os.chmod(readable, 0o755)  # readable by others is not a way to plant files
    files.check_private_dir(readable)


def test_a_foreign_owned_folder_is_refused(tmp_path: Path) -> None:
    _needs_root()
    folder = tmp_path / "foreign"
    folder.mkdir(mode=0o700)
    os.chown(folder, FOREIGN_UID, FOREIGN_UID)
    with pytest.raises(UnsafeStore, match="belongs to another user") as e:
        files.check_private_dir(folder)
    assert f"uid {FOREIGN_UID}" in e.value.message


def test_a_file_or_a_missing_path_is_not_a_private_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UnsafeStore, match="not a folder"):
        files.check_private_dir(tmp_path / "file")
    with pytest.raises(UnsafeStore, match="disappeared"):
        files.check_private_dir(tmp_path / "missing")
    with pytest.raises(UnsafeStore, match="not a folder"):
        files.ensure_private_dir(tmp_path / "file")


# ---- durable syncs ---------------------------------------------------------------------------

def test_sync_fd_uses_full_fsync_where_it_exists_and_falls_back_to_fsync(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    class FakeFcntl:
        def __init__(self, works: bool) -> None:
            self.works = works

        def fcntl(self, fd: int, cmd: int) -> int:
            calls.append(f"fullfsync {cmd}")
            if not self.works:
                raise OSError(22, "not supported by this file system")
            return 0

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        monkeypatch.setattr(files, "_FULLFSYNC", None)
        files.sync_fd(fd)
        assert calls == ["fsync"]
        calls.clear()
        monkeypatch.setattr(files, "_FULLFSYNC", 51)
        monkeypatch.setattr(files, "fcntl", FakeFcntl(works=True))
        files.sync_fd(fd)
        assert calls == ["fullfsync 51"]
        calls.clear()
        monkeypatch.setattr(files, "fcntl", FakeFcntl(works=False))
        files.sync_fd(fd)
        assert calls == ["fullfsync 51", "fsync"]
    finally:
        os.close(fd)


def test_sync_tree_syncs_every_file_and_folder_deepest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("names descriptors through /proc/self/fd")
    root = tmp_path / "gen"
    (root / "a" / "b").mkdir(parents=True)
    for rel in ("top", "a/mid", "a/b/deep1", "a/b/deep2"):
        (root / rel).write_bytes(rel.encode())
    synced: list[str] = []
    real = files.sync_fd

    def spy(fd: int) -> None:
        synced.append(os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), root))
        real(fd)

    monkeypatch.setattr(files, "sync_fd", spy)
    files.sync_tree(root)
    assert sorted(synced) == sorted([".", "a", "a/b", "top", "a/mid", "a/b/deep1", "a/b/deep2"])
    for folder in (".", "a", "a/b"):
        inside = [p for p in synced if folder == "." or p.startswith(folder + "/")]
        assert all(synced.index(p) < synced.index(folder) for p in inside if p != folder), synced


def test_sync_tree_never_follows_a_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "gen"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    (root / "link").symlink_to(outside)
    synced: list[int] = []
    real = files.sync_fd

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(files, "sync_fd", spy)
    try:
        files.sync_tree(root)
    except OSError:
        pass  # refused (ELOOP) is allowed; following it is not
    assert outside.stat().st_ino not in synced


def test_sync_tree_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    root = tmp_path / "gen"
    root.mkdir()
    (root / "file").write_bytes(b"x")
    os.mkfifo(root / "fifo")
    t = threading.Thread(target=lambda: _quietly(files.sync_tree, root), daemon=True)
    t.start()
    t.join(2)
    blocked = t.is_alive()
    if blocked:  # unblock the open: a writer on the FIFO lets it return
        os.close(os.open(root / "fifo", os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
    assert not blocked, "sync_tree blocked on a FIFO"


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError:
        pass


def test_sync_dir_refuses_a_file(tmp_path: Path) -> None:
    files.sync_dir(tmp_path)
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        files.sync_dir(tmp_path / "f")
