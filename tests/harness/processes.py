"""Processes of a test or benchmark run: read /proc, signal by pid, find the owner, reap leftovers.

Every `clarity serve` a run starts carries `CLARITY_SESSION_ID=<marker>...` in its environment, where
the marker is unique to the run; that is how a run recognises its own servers (a reused pid or another
helper's server never matches). Guarantees: `reap` and `signal_pid` only ever signal a pid; `reap`
signals only processes whose session id starts with the marker. The state, environment and pid scans
read /proc: Linux only (the tests' own infrastructure; Clarity's process facts are clarity.platform).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clarity.platform import processes as platform_processes


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def rss_kib(pid: int) -> int | None:
    """Resident memory of `pid` in KiB, or None when the process is gone (`clarity.platform.processes`)."""
    return platform_processes.rss_kib(pid)


def proc_state(pid: int) -> str | None:
    """The /proc state letter (R, S, T, Z, ...) or None when the process is gone."""
    stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
    if ")" not in stat:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z", "X")


def session_id_of(pid: int) -> str | None:
    """CLARITY_SESSION_ID of a live process (None when unreadable or unset)."""
    for item in _read(f"/proc/{pid}/environ").split(b"\0"):
        if item.startswith(b"CLARITY_SESSION_ID="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return None


def marked_pids(marker: str) -> list[int]:
    """Live processes (not this one) whose CLARITY_SESSION_ID starts with `marker`."""
    if not marker:
        raise ValueError("an empty marker would match every session")
    want = f"CLARITY_SESSION_ID={marker}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        if any(item.startswith(want) for item in _read(d / "environ").split(b"\0")):
            out.append(int(d.name))
    return sorted(out)


def signal_pid(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send `sig` to `pid`; False when the process no longer exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to `pid` (raises ProcessLookupError when it is gone)."""
    os.kill(pid, sig)


def stop(pid: int) -> bool:
    return signal_pid(pid, signal.SIGSTOP)


def cont(pid: int) -> bool:
    return signal_pid(pid, signal.SIGCONT)


def reap(marker: str, rounds: int = 3) -> list[int]:
    """SIGCONT then SIGKILL every live server of this run (session id starting with `marker`); returns
    the pids signalled. Bounded: `rounds` passes, 0.3 s apart."""
    killed: list[int] = []
    for _ in range(rounds):
        pids = marked_pids(marker)
        if not pids:
            break
        for pid in pids:
            cont(pid)
            if signal_pid(pid, signal.SIGKILL):
                killed.append(pid)
        time.sleep(0.3)
    return killed


def owner_pid(status: dict[str, Any] | None) -> int | None:
    """The lease owner's pid from a status dict (`clarity status --json` or the coordination_status tool:
    both have the same shape), or None when nobody owns the lease."""
    owner = (status or {}).get("owner")
    pid = owner.get("pid") if isinstance(owner, dict) else None
    return pid if isinstance(pid, int) else None


def own_pid(status: dict[str, Any]) -> int:
    """The pid of the server that answered a coordination_status call."""
    return int(status["this_process"]["pid"])


def cli(home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m clarity ARGS --home HOME` with this interpreter and return the finished process;
    with `check`, a non-zero exit raises AssertionError with the tail of stderr."""
    cmd = [sys.executable, "-m", "clarity", *args, "--home", str(home)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def cli_status(home: Path, env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
    """`clarity status --json` of `home` (never takes the lease)."""
    return json.loads(cli(home, "status", "--json", env=env, timeout=timeout).stdout)  # type: ignore[no-any-return]


def wait_until(pred: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> bool:
    """Poll `pred` until it is truthy (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False
