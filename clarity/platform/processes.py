"""Facts about processes: alive, start time, pid namespace, resident memory.

Backends, chosen by capability (`BACKEND`): `proc` where `/proc/self/stat` exists (Linux), `ps`
elsewhere (macOS, the BSDs: the POSIX `ps` command, a few milliseconds per call).

Guarantees: every function answers None (or False) rather than raising when the process is gone or
the fact cannot be had. A start time is only ever compared with another start time from the same
backend on the same machine (lease records); it is not a clock. Pid namespaces exist only on Linux:
elsewhere `pid_namespace()` is None, which every reader treats as "the same namespace".
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

_PROC = Path("/proc")
BACKEND = "proc" if (_PROC / "self" / "stat").exists() else "ps"


def alive(pid: int) -> bool:
    """A process with this pid exists (in this pid namespace); it may be another user's."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ps(pid: int, field: str) -> str | None:
    try:
        out = subprocess.run(["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True, text=True,
                             timeout=5, check=False, env={"LC_ALL": "C", "PATH": "/bin:/usr/bin"})
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def _proc_start_time(pid: int) -> int | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _ps_start_time(pid: int) -> int | None:
    text = _ps(pid, "lstart")  # e.g. "Fri Dec  4 18:41:18 2026" (C locale): fixed for one process's life
    if text is None:
        return None
    try:
        return int(time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")))
    except ValueError:
        return None


def process_start_time(pid: int) -> int | None:
    """An integer that stays the same for one process's life and differs for a later process that
    reuses the pid: the kernel's start time in clock ticks (`/proc`), or a digest of `ps -o lstart`."""
    return _proc_start_time(pid) if BACKEND == "proc" else _ps_start_time(pid)


def pid_namespace() -> str | None:
    """This process's pid namespace, e.g. 'pid:[4026531836]' (containers each have their own); None
    where the system has no pid namespaces."""
    try:
        return os.readlink(_PROC / "self" / "ns" / "pid")
    except OSError:
        return None


def rss_kib(pid: int) -> int | None:
    """Resident memory of `pid` in KiB (VmRSS from /proc, `ps -o rss` elsewhere)."""
    if BACKEND == "proc":
        try:
            for line in (_PROC / str(pid) / "status").read_text(errors="replace").splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None
    text = _ps(pid, "rss")
    return int(text) if text and text.isdigit() else None
