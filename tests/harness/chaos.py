"""Chaos against the lease owner of one home: SIGKILL it, or freeze it (SIGSTOP) and thaw it (SIGCONT).

The owner is found one way: `clarity status --json` (never takes the lease) -> `owner_pid`. A process is
signalled only when its CLARITY_SESSION_ID starts with this run's marker, so a run never signals a process
it did not start. Every kill is written to `kills.jsonl` before the signal is sent, so the victim's
client can tell "my server was killed on purpose" from a real failure.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.ledger import Jsonl
from tests.harness.processes import cli_status, cont, owner_pid, session_id_of, signal_pid


class Chaos:
    def __init__(self, home: Path, marker: str, kill_log: Path, env: dict[str, str] | None = None,
                 status_fn: Callable[[], dict[str, Any]] | None = None) -> None:
        self.home = home
        self.status_fn = status_fn  # instead of `clarity status --json` (e.g. the same status, in-process)
        self.marker = marker
        self.env = env
        self.kill_log = Jsonl(kill_log)
        self.kills: list[dict[str, Any]] = []
        self.standby_kills: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.frozen: dict[str, Any] | None = None
        self.skipped: Counter[str] = Counter()

    def status(self) -> dict[str, Any]:
        """The home's status: `status_fn()` when given, else `clarity status --json`."""
        if self.status_fn is not None:
            return self.status_fn()
        return cli_status(self.home, env=self.env, timeout=15)

    def target(self) -> tuple[dict[str, Any], str] | None:
        """(owner record, its session id) when the owner is a server of this run, else None (counted)."""
        try:
            st = self.status()
        except (subprocess.TimeoutExpired, AssertionError, ValueError):
            self.skipped["status_failed"] += 1
            return None
        pid = owner_pid(st)
        if pid is None:
            self.skipped["no_owner"] += 1
            return None
        sid = session_id_of(pid)
        if sid is None or not sid.startswith(self.marker):
            self.skipped["owner_not_ours"] += 1
            return None
        return st["owner"], sid

    def kill_owner(self) -> dict[str, Any] | None:
        """SIGKILL the owner; returns the kill record (with its time `t`) or None when nobody was killed."""
        found = self.target()
        if found is None:
            return None
        owner, sid = found
        rec = {"t": time.time(), "pid": owner["pid"], "epoch": owner.get("epoch"), "state": owner.get("state"),
               "session": sid}
        self.kill_log.write(**rec)  # before the kill: the victim's writer must see it when its call fails
        if not signal_pid(owner["pid"], signal.SIGKILL):
            self.skipped["owner_exited"] += 1
            return None
        self.kills.append(rec)
        return rec

    def kill_standby(self) -> dict[str, Any] | None:
        """SIGKILL the hot standby (`clarity status --json` -> `standby.pid`) when it is a server of this
        run; returns the kill record (logged like an owner kill, with role "standby") or None."""
        try:
            st = self.status()
        except (subprocess.TimeoutExpired, AssertionError, ValueError):
            self.skipped["status_failed"] += 1
            return None
        pid = (st.get("standby") or {}).get("pid")
        if not isinstance(pid, int):
            self.skipped["no_standby"] += 1
            return None
        sid = session_id_of(pid)
        if sid is None or not sid.startswith(self.marker):
            self.skipped["standby_not_ours"] += 1
            return None
        rec = {"t": time.time(), "pid": pid, "role": "standby", "session": sid}
        self.kill_log.write(**rec)
        if not signal_pid(pid, signal.SIGKILL):
            self.skipped["standby_exited"] += 1
            return None
        self.standby_kills.append(rec)
        return rec

    def stop_owner(self) -> bool:
        """SIGSTOP the owner (until `thaw`)."""
        found = self.target()
        if found is None:
            return False
        owner, sid = found
        if not signal_pid(owner["pid"], signal.SIGSTOP):
            self.skipped["owner_exited"] += 1
            return False
        self.frozen = {"t_stop": time.time(), "pid": owner["pid"], "epoch": owner.get("epoch"), "session": sid}
        return True

    def thaw(self) -> float | None:
        """SIGCONT a frozen owner; returns the time it was thawed (None when nothing was frozen)."""
        if self.frozen is None:
            return None
        cont(self.frozen["pid"])
        self.frozen["t_cont"] = t = time.time()
        self.stops.append(self.frozen)
        self.frozen = None
        return t

    def close(self) -> None:
        self.thaw()
        self.kill_log.close()
