"""clarity.platform.disk: free space, preallocation of sparse files, and a full file system's clean error."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarity.platform import disk

MIB = 1 << 20


def test_free_bytes_is_what_statvfs_gives_unprivileged_writers(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    free = disk.free_bytes(tmp_path)
    assert free > 0
    assert abs(free - st.f_bavail * st.f_frsize) < 64 * MIB  # other writers may run meanwhile


def test_the_backend_is_chosen_by_capability() -> None:
    assert disk.BACKEND in ("fallocate", "none")
    if sys.platform.startswith("linux"):
        assert disk.BACKEND == "fallocate"


def test_preallocate_backs_every_block_and_keeps_content_and_size(tmp_path: Path) -> None:
    f = tmp_path / "sparse"
    with f.open("wb") as out:
        out.write(b"head")
        out.truncate(8 * MIB)  # a hole of 8 MiB, like a fresh WAL file
        out.seek(4 * MIB)
        out.write(b"middle")
    before = disk.allocated_bytes(f)
    if before >= 8 * MIB:
        pytest.skip("this file system does not make sparse files")
    done = disk.preallocate(f)
    if not done:
        assert disk.BACKEND == "none" or disk.allocated_bytes(f) == before  # nothing happened
        return
    assert disk.allocated_bytes(f) >= 8 * MIB
    assert f.stat().st_size == 8 * MIB
    data = f.read_bytes()
    assert data[:4] == b"head" and data[4 * MIB:4 * MIB + 6] == b"middle"
    assert data.count(0) == 8 * MIB - 10
    assert disk.preallocate(f)  # again: nothing missing, nothing changed
    assert f.read_bytes() == data


def test_preallocate_refuses_links_and_folders(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        disk.preallocate(link)
    with pytest.raises(OSError):
        disk.preallocate(tmp_path)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at the end (root only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True, capture_output=True, timeout=30)


def test_a_full_file_system_gives_enospc_not_a_crash(small_fs: Path) -> None:
    assert 3 * MIB < disk.free_bytes(small_fs) <= 4 * MIB
    f = small_fs / "big"
    with f.open("wb") as out:
        out.truncate(16 * MIB)  # larger than the file system: only a hole
    if disk.BACKEND == "none":
        assert disk.preallocate(f) is False
        return
    with pytest.raises(OSError) as err:
        disk.preallocate(f)
    assert err.value.errno == errno.ENOSPC and str(f) in str(err.value)
    f.unlink()
    fits = small_fs / "fits"
    with fits.open("wb") as out:
        out.truncate(2 * MIB)
    assert disk.preallocate(fits)
    assert disk.free_bytes(small_fs) <= 2 * MIB + 64 * 1024  # its pages are taken now
