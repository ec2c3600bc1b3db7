"""A child process with a deadline that dies with its parent: the index build and the migration copy.

Parent side, `run_child(cmd, deadline_s, ...)`: starts `cmd` (stdin closed, stderr inherited, stdout
captured or discarded), waits at most `deadline_s` seconds, and polls `cancel` every `POLL_S`. Whatever
way it leaves (return, deadline, cancel, an exception in the parent), the child has exited: it is
killed and reaped (bounded) first. `ChildTimeout` and `ChildCancelled` say why a child was killed.

Child side, `die_with_parent(parent_pid)`, called first thing in the child's `main`: the child is
killed when its parent dies. Backends, chosen by capability (`BACKEND`): `pdeathsig` where the C
library has `prctl` (Linux: PR_SET_PDEATHSIG, SIGKILL, delivered by the kernel at once); `watchdog`
elsewhere (a daemon thread that checks `getppid()` every `WATCHDOG_S` and exits the process when the
parent is gone: a child outlives its parent by at most that much). Either way, a child whose parent is
already gone when it starts exits at once with status 3.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from clarity.errors import ClarityError

POLL_S = 0.2
WATCHDOG_S = 0.5
_PR_SET_PDEATHSIG = 1


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


_prctl = _libc_function("prctl")
BACKEND = "pdeathsig" if _prctl is not None else "watchdog"


class ChildTimeout(ClarityError):
    """The child ran past its deadline and was killed."""

    kind = "child_timeout"


class ChildCancelled(ClarityError):
    """The parent cancelled the child (it was killed)."""

    kind = "child_cancelled"


@dataclass
class ChildResult:
    returncode: int
    stdout: bytes
    pid: int
    seconds: float


def run_child(cmd: list[str], deadline_s: float, *, cancel: threading.Event | None = None,
              capture_stdout: bool = False) -> ChildResult:
    """Run `cmd` to its end within `deadline_s` (see the module docstring)."""
    t0 = time.perf_counter()
    end = time.monotonic() + deadline_s
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                out, _ = proc.communicate(timeout=max(0.001, min(POLL_S, end - time.monotonic())))
                chunks.append(out or b"")
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise ChildCancelled(f"pid {proc.pid} cancelled") from None
                if time.monotonic() >= end:
                    raise ChildTimeout(f"pid {proc.pid} ran past its deadline of {deadline_s:.0f} s "
                                       "and was killed") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:  # unkillable (D state): leave it to the kernel
                pass
    return ChildResult(proc.returncode, b"".join(chunks), proc.pid, time.perf_counter() - t0)


def _watchdog(parent_pid: int) -> None:
    while True:
        time.sleep(WATCHDOG_S)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent_pid: int, backend: str | None = None) -> None:
    """Make this process die with `parent_pid` (see the module docstring); `backend` forces one."""
    if (backend or BACKEND) == "pdeathsig":
        if _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watchdog, args=(parent_pid,), name="clarity-parent-watchdog",
                         daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before this took effect
        os._exit(3)
