#!/usr/bin/env python3
"""Soak: writers store through real sessions while the owner is killed again and again (issue 16).

    python scripts/soak.py --sessions N --owner-kills K [--pace-s S] [--stop-for S] [--gap-s S]
        [--mode forward|handoff] [--deadline-s S] [--json FILE] [--markdown FILE] [--timeout-s S]
        [--home DIR] [--keep] [--seed N]

N writer processes (the stress run's workers, `tests.harness.soak.SoakWorker`) each drive their own
`clarity serve` over MCP, storing distinct notes with every acknowledgement in a ledger; a writer whose
server was killed starts a new session and re-sends the write in hand. This process runs the chaos loop
(`tests.harness.chaos`, which only ever signals servers carrying this run's session-id marker). Each
cycle, once the previous action has been recovered from (a call of any session succeeded after it) and a
random pause (uniform in [S/2, 3S/2], S = `--pace-s`) has passed, it does one of:
- SIGKILL the lease owner (most often, ~75%);
- SIGKILL the hot standby (`clarity status --json` -> `standby.pid`; ~10%);
- SIGSTOP the owner for a short while (`--stop-for`, default 0.5 s) then SIGCONT it (~10%);
- `clarity backup` while the writers keep writing (~5%).
It stops after K owner kills (or `--timeout-s`), stops the writers (each finishes the write in hand),
lists the store from a fresh session and checks with `tests.harness.ledger.verify` that every
acknowledged write is stored exactly once. It reports owner/standby kills, stops, backups, acks, stored,
lost, duplicated, failover p50/p99/max (kill -> next successful call of any session, as the stress run
measures it), the duration, seconds per owner kill (and the implied time for 1,000 kills) and the machine
(`tests.harness.machine`): a summary on stdout, `--json` and `--markdown` (e.g. docs/bench/soak.md).
Exit status 1 when anything was lost or duplicated, a writer crashed or gave up, verification failed,
or the timeout came before K owner kills; else 0.

Not covered: a disk-full window (it needs a loop mount; tests/test_disk_full.py covers it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the checkout: tests.harness


def _stress_module() -> Any:
    """scripts/stress.py, whose `Run` (logs, stopping the workers, verification) the soak reuses."""
    spec = importlib.util.spec_from_file_location("clarity_stress_script", Path(__file__).with_name("stress.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


stress = _stress_module()

from tests.harness import ledger  # noqa: E402
from tests.harness.chaos import Chaos  # noqa: E402
from tests.harness.machine import loadavg, machine_info  # noqa: E402
from tests.harness.progress import Bar, progress  # noqa: E402
from tests.harness.soak import (  # noqa: E402
    build_soak_report,
    print_soak_summary,
    soak_failed,
    soak_markdown,
    soak_worker_entry,  # noqa: E402
)

ACTIONS = (("kill_owner", 0.75), ("kill_standby", 0.10), ("stop_owner", 0.10), ("backup", 0.05))


class SoakRun(stress.Run):  # type: ignore[misc,name-defined]
    def __init__(self, a: argparse.Namespace) -> None:
        a.writers, a.readers, a.writes = a.sessions, 0, 10_000_000  # what stress.Run reads
        super().__init__(a)
        stress_chaos: Chaos = self.chaos  # replaced: this run's marker, and its status read in-process
        stress_chaos.close()
        self.marker = f"soak-{uuid.uuid4().hex[:8]}-"
        self.chaos: Chaos = Chaos(self.home, self.marker, self.work / "kills.jsonl", status_fn=self.status)
        self.rng = random.Random(a.seed)
        self.backups: list[dict[str, Any]] = []
        self.t_chaos_end = self.t_end = 0.0

    def status(self) -> dict[str, Any]:
        """What `clarity status --json` prints, read in this process (a CLI process per look would
        cost ~0.4 s of every cycle): the owner record and the standby, never taking the lease."""
        from clarity.config import load_settings
        from clarity.coordination.status import status

        try:
            return status(load_settings(str(self.home), create=False))
        except Exception as e:  # counted by Chaos as status_failed
            raise ValueError(f"status: {type(e).__name__}: {e}") from e

    def start_workers(self) -> None:
        ctx = mp.get_context("spawn")
        a = self.a
        cfg0 = {"home": str(self.home), "work": str(self.work), "env": self.env, "marker": self.marker,
                "writes": a.writes, "writers": a.sessions, "deadline_at": time.time() + a.timeout_s + 60,
                "parent_pid": os.getpid(), "read_timeout_s": self.call_deadline + 30.0, "gap_s": a.gap_s,
                "max_attempts": 500, "max_sessions": 1_000_000, "max_reads": 0, "role": "writer"}
        for i in range(a.sessions):
            name = f"w{i}"
            cfg = dict(cfg0, index=i, seed=self.rng.randrange(1 << 30))
            p = ctx.Process(target=soak_worker_entry, args=(cfg,), name=f"soak-{name}", daemon=False)
            p.start()
            self.procs[name] = p
            self.tails[name] = ledger.Tail(self.work / f"{name}.jsonl")
            self.records[name] = []

    def backup(self) -> None:
        t0 = time.time()
        env = {k: v for k, v in os.environ.items() if k != "CLARITY_SESSION_ID"} | self.env
        try:
            p = subprocess.run([sys.executable, "-m", "clarity", "backup", "--json", "--home", str(self.home)],
                               capture_output=True, text=True, timeout=120, env=env)
            ok, detail = p.returncode == 0, (p.stdout if p.returncode == 0 else p.stderr)[-300:]
            count = json.loads(p.stdout).get("count") if ok else None
        except (subprocess.TimeoutExpired, ValueError) as e:
            ok, detail, count = False, f"{type(e).__name__}: {e}", None
        self.backups.append({"t": t0, "s": round(time.time() - t0, 2), "ok": ok, "count": count,
                             "detail": None if ok else detail})

    def act(self) -> bool:
        """One chaos action; True when something was done (False: try again shortly)."""
        r, acc = self.rng.random(), 0.0
        action = ACTIONS[0][0]
        for name, w in ACTIONS:
            acc += w
            if r < acc:
                action = name
                break
        if action == "kill_owner":
            rec = self.chaos.kill_owner()
        elif action == "kill_standby":
            rec = self.chaos.kill_standby()
        elif action == "stop_owner":
            return self.chaos.stop_owner()
        else:
            self.backup()
            return True
        if rec is None:
            return False
        self.chaos_t, self.recovered = rec["t"], False
        return True

    def writer_died(self) -> bool:
        return any(not p.is_alive() for p in self.procs.values())

    def soak(self, bar: Bar) -> None:
        a = self.a
        end = self.t_start + a.timeout_s
        next_at: float | None = None  # when the next action is due (None: waiting for recovery)
        while len(self.chaos.kills) < a.owner_kills:
            now = time.time()
            if now > end:
                self.timed_out = True
                break
            self.poll_logs()
            if self.writer_died():
                break
            frozen = self.chaos.frozen
            if frozen is not None:
                if now - frozen["t_stop"] >= a.stop_for:
                    self.thaw()
            elif next_at is None:
                if self.recovered:
                    next_at = now + self.rng.uniform(0.5, 1.5) * a.pace_s
            elif now >= next_at:
                next_at = None if self.act() else now + 0.25
                if next_at is None and self.recovered:  # a backup: nothing to recover from
                    next_at = time.time() + self.rng.uniform(0.5, 1.5) * a.pace_s
            c = self.chaos
            bar.update(len(c.kills), f"standby kills {len(c.standby_kills)}  stops {len(c.stops)}  backups "
                                     f"{len(self.backups)}  acked {self.acked}{'  FROZEN' if c.frozen else ''}")
            time.sleep(0.05)
        self.thaw()
        # the last kill's failover: wait (bounded) for a call served after it
        wait_end = time.time() + min(60.0, max(5.0, end + 30 - time.time()))
        while not self.recovered and time.time() < wait_end and not self.writer_died():
            self.poll_logs()
            time.sleep(0.05)
        self.t_chaos_end = self.t_writers_end = time.time()

    def stop_workers(self) -> None:
        (self.work / "stop-writers").touch()
        super().stop_workers()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Soak: kill the owner of a shared store again and again.")
    p.add_argument("--sessions", type=int, default=3, help="writer sessions (default 3)")
    p.add_argument("--owner-kills", type=int, default=1000, help="stop after this many owner kills")
    p.add_argument("--pace-s", type=float, default=0.4,
                   help="mean pause between recovery and the next action (uniform in [S/2, 3S/2])")
    p.add_argument("--stop-for", type=float, default=0.5, help="how long a SIGSTOPped owner stays frozen")
    p.add_argument("--gap-s", type=float, default=0.05, help="pause between one writer's writes")
    p.add_argument("--mode", choices=("forward", "handoff"), default="forward")
    p.add_argument("--deadline-s", type=float, help="CLARITY_CALL_DEADLINE_S for the servers")
    p.add_argument("--home", help="store folder (default: a fresh temp folder, deleted afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temp home and the per-writer logs")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the results as Markdown")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="bound on the chaos loop (default 3600)")
    p.add_argument("--seed", type=int, help="seed of the chaos choices and pauses")
    a = p.parse_args(argv)
    if a.sessions < 2 or a.owner_kills < 1:
        p.error("--sessions must be >= 2 (an owner and someone to take over), --owner-kills >= 1")
    for name in ("pace_s", "stop_for", "deadline_s", "timeout_s"):
        v = getattr(a, name)
        if v is not None and v <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if a.gap_s < 0:
        p.error("--gap-s must be >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    machine = machine_info(REPO)
    run = SoakRun(a)
    res: dict[str, Any] | None = None
    try:
        run.t_start = time.time()
        run.start_workers()
        try:
            with progress(a.owner_kills, "owner kills") as bar:
                run.soak(bar)
        except KeyboardInterrupt:
            run.interrupted = True
            sys.stderr.write("interrupted: stopping the writers, then verifying what was acknowledged\n")
        finally:
            run.stop()
        stored, verify_error, reaped = run.finish()
        run.t_end = time.time()
        machine["loadavg_end"] = loadavg()
        res = build_soak_report(run, stored, verify_error, reaped, machine)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
    finally:
        run.cleanup(a.keep)
    if res is None:
        return 130
    print_soak_summary(res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    if a.markdown:
        Path(a.markdown).write_text(soak_markdown(res), encoding="utf-8")
    if run.interrupted:
        return 130
    return 1 if soak_failed(res) else 0


if __name__ == "__main__":
    sys.exit(main())
