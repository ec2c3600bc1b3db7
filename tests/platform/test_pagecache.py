"""clarity.platform.pagecache: asking the kernel to cache a folder's regular files, and reading them
once; links and anything not a regular file are skipped, nothing raises, nothing blocks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clarity.platform import pagecache

pytestmark = pytest.mark.timeout(60)


def _tree(root: Path, outside: Path) -> dict[str, int]:
    """A store-like folder with regular files, links and a FIFO; returns {relative path: size} of the
    regular files in it."""
    (root / "segments" / "0").mkdir(parents=True)
    sizes = {"wal": 10, "segments/0/vectors.dat": (9 << 20) + 3, "segments/0/empty": 0}
    for rel, size in sizes.items():
        (root / rel).write_bytes(b"v" * size)
    outside.mkdir()
    (outside / "secret").write_bytes(b"s" * 1000)
    (root / "link-to-file").symlink_to(outside / "secret")
    (root / "link-to-dir").symlink_to(outside)
    os.mkfifo(root / "fifo")
    return sizes


def _in_thread(fn: Callable[[], Any], root: Path) -> Any:
    """Run `fn` with a time limit; a blocked open of the FIFO is released afterwards."""
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    t.start()
    t.join(2)
    blocked = t.is_alive()
    if blocked:
        os.close(os.open(root / "fifo", os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
    assert not blocked, "blocked on the FIFO"
    return result[0] if result else None


def test_will_need_tree_advises_every_regular_file_and_only_those(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if pagecache.BACKEND != "fadvise":
        pytest.skip("no posix_fadvise here (the `none` backend is tested below)")
    root = tmp_path / "store"
    sizes = _tree(root, tmp_path / "outside")
    advised: list[tuple[int, int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((os.fstat(fd).st_ino, offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    n = _in_thread(lambda: pagecache.will_need_tree(root), root)
    assert n == len(sizes)
    assert sorted(a[0] for a in advised) == sorted((root / rel).stat().st_ino for rel in sizes)
    assert all(a[1:] == (0, 0, os.POSIX_FADV_WILLNEED) for a in advised)
    assert (tmp_path / "outside" / "secret").stat().st_ino not in [a[0] for a in advised]


def test_will_need_tree_of_a_missing_folder_or_without_the_backend_is_zero(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert pagecache.will_need_tree(tmp_path / "missing") == 0
    root = tmp_path / "store"
    root.mkdir()
    (root / "f").write_bytes(b"x")
    monkeypatch.setattr(pagecache, "BACKEND", "none")
    assert pagecache.will_need_tree(root) == 0


def test_will_need_tree_skips_what_it_cannot_open(tmp_path: Path) -> None:
    if pagecache.BACKEND != "fadvise":
        pytest.skip("no posix_fadvise here")
    if os.geteuid() == 0:
        pytest.skip("root opens a mode-000 file anyway")
    root = tmp_path / "store"
    root.mkdir()
    (root / "readable").write_bytes(b"x")
    (root / "locked").write_bytes(b"x")
    os.chmod(root / "locked", 0)
    assert pagecache.will_need_tree(root) == 1


def test_read_tree_reads_every_regular_file_in_full_and_nothing_else(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    sizes = _tree(root, tmp_path / "outside")
    os.unlink(root / "fifo")  # a FIFO has a test of its own
    read: dict[int, int] = {}
    real = os.read

    def spy(fd: int, n: int) -> bytes:
        data = real(fd, n)
        ino = os.fstat(fd).st_ino
        read[ino] = read.get(ino, 0) + len(data)
        return data

    monkeypatch.setattr(os, "read", spy)
    pagecache.read_tree(root)
    monkeypatch.undo()
    expected = {(root / rel).stat().st_ino: size for rel, size in sizes.items()}
    assert read == expected


def test_read_tree_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _tree(root, tmp_path / "outside")
    _in_thread(lambda: pagecache.read_tree(root), root)


def test_read_tree_of_a_missing_folder_does_nothing(tmp_path: Path) -> None:
    pagecache.read_tree(tmp_path / "missing")


def test_the_backend_is_chosen_by_capability() -> None:
    assert pagecache.BACKEND == ("fadvise" if hasattr(os, "posix_fadvise") else "none")
