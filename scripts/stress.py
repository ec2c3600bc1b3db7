#!/usr/bin/env python3
"""Stress test: many real `clarity serve` sessions write to one store while the owner is killed/frozen.

    python scripts/stress.py --writers 8 --writes 200 [--readers R] [--mode forward|handoff]
        [--kill-owner-every S | --stop-owner-every S [--stop-for S]] [--deadline-s S]
        [--home DIR] [--keep] [--json FILE] [--timeout-s S]

Each writer is a separate process driving its own `clarity serve` over MCP and storing `--writes`
distinct notes (`tests.harness.workers`); every acknowledgement goes to its ledger. Chaos
(`tests.harness.chaos`), run by this process:
- `--kill-owner-every S`: every S seconds SIGKILL the lease owner (only a server of this run, and only
  once the previous failover has completed: kill -> next successful call of any session; none once every
  write is acknowledged, while the writers shut down). The first kill comes once a third of the writes
  are acknowledged if that is sooner than S, so a run on a fast machine is never without one.
- `--stop-owner-every S`: SIGSTOP the owner for `--stop-for` seconds (default S/2), then SIGCONT it.
  Calls ending with "unresponsive" during a freeze (up to one call deadline after it) are expected.

At the end a fresh session pages through `list_memories` (tag "stress") and `tests.harness.ledger.verify`
checks every acknowledgement: exit status 1 when anything was lost or duplicated, a writer crashed or gave
up, or the run timed out; else 0. Progress goes to stderr, the summary table to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.harness

from tests.harness import ledger, processes  # noqa: E402
from tests.harness.chaos import Chaos  # noqa: E402
from tests.harness.progress import Bar, progress  # noqa: E402
from tests.harness.sessions import SessionGroup, all_memories  # noqa: E402
from tests.harness.stress_report import build_report, failed, print_summary  # noqa: E402
from tests.harness.workers import served_after, worker_entry  # noqa: E402


class Run:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.marker = f"stress-{uuid.uuid4().hex[:8]}-"
        self.own_home = a.home is None
        self.home = Path(a.home or tempfile.mkdtemp(prefix="clarity-stress-home-")).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="clarity-stress-work-"))
        self.env = {"CLARITY_COORDINATION_MODE": a.mode}
        if a.deadline_s is not None:
            self.env["CLARITY_CALL_DEADLINE_S"] = str(a.deadline_s)
        self.call_deadline = a.deadline_s if a.deadline_s is not None else 30.0
        self.procs: dict[str, mp.process.BaseProcess] = {}
        self.tails: dict[str, ledger.Tail] = {}
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.chaos = Chaos(self.home, self.marker, self.work / "kills.jsonl")
        self.chaos_t = 0.0  # time of the last kill or SIGCONT (0: the run's start)
        self.recovered = False  # a call succeeded since then (see `served_after`)
        self.acked = self.errors_live = 0
        self.t_start = self.t_writers_end = 0.0
        self.timed_out = self.interrupted = False

    def start_workers(self) -> None:
        ctx = mp.get_context("spawn")
        a = self.a
        base = {"home": str(self.home), "work": str(self.work), "env": self.env, "marker": self.marker,
                "writes": a.writes, "writers": a.writers, "deadline_at": time.time() + a.timeout_s,
                "parent_pid": os.getpid(), "read_timeout_s": self.call_deadline + 30.0,
                "max_attempts": 200, "max_sessions": 500, "max_reads": 1_000_000}
        for role, n in (("writer", a.writers), ("reader", a.readers)):
            for i in range(n):
                name = f"{role[0]}{i}"
                cfg = dict(base, role=role, index=i, seed=random.randrange(1 << 30))
                p = ctx.Process(target=worker_entry, args=(cfg,), name=f"stress-{name}", daemon=False)
                p.start()
                self.procs[name] = p
                self.tails[name] = ledger.Tail(self.work / f"{name}.jsonl")
                self.records[name] = []

    def poll_logs(self) -> None:
        for name, tail in self.tails.items():
            for rec in tail.read():
                self.records[name].append(rec)
                ev = rec.get("ev")
                if ev in ("ack", "ok") and served_after(rec.get("t0", 0.0), rec.get("t1", 0.0), self.chaos_t):
                    self.recovered = True
                self.acked += ev == "ack"
                self.errors_live += ev == "error" and rec.get("kind") != "killed_session"

    def chaos_step(self, now: float, every: float) -> float:
        """Kill or freeze the owner when one served since the previous action; returns the next time."""
        if not self.recovered:
            self.chaos.skipped["waiting_for_recovery"] += 1
            return now + 0.1
        if self.a.kill_owner_every:
            rec = self.chaos.kill_owner()
            if rec is None:
                return now + 0.25
            self.chaos_t, self.recovered = rec["t"], False
        elif not self.chaos.stop_owner():
            return now + 0.25
        return time.time() + every

    def thaw(self) -> None:
        t = self.chaos.thaw()
        if t is not None:
            self.chaos_t, self.recovered = t, False

    def monitor(self, bar: Bar) -> None:
        a = self.a
        hard_end = self.t_start + a.timeout_s + 30.0
        every = a.kill_owner_every or a.stop_owner_every
        stop_for = a.stop_for if a.stop_for is not None else (a.stop_owner_every or 0) / 2
        next_chaos = self.t_start + every if every else math.inf
        first = bool(every)  # no chaos action yet
        while any(p.is_alive() for n, p in self.procs.items() if n.startswith("w")):
            now = time.time()
            if now > hard_end:
                self.timed_out = True
                break
            self.poll_logs()
            frozen = self.chaos.frozen
            if frozen is not None and now - frozen["t_stop"] >= stop_for:
                self.thaw()
            elif frozen is None and self.acked < a.writers * a.writes and (
                    now >= next_chaos or (first and self.acked >= a.writers * a.writes // 3)):
                # (once every write is acknowledged, a kill has no call after it to recover; the first
                # action comes after a third of the writes at the latest, so a fast run still has one)
                actions = len(self.chaos.kills) + len(self.chaos.stops)
                next_chaos = self.chaos_step(now, every or math.inf)
                first = first and len(self.chaos.kills) + len(self.chaos.stops) == actions
            bar.update(self.acked, f"errors {self.errors_live}  kills {len(self.chaos.kills)}  stops "
                                   f"{len(self.chaos.stops)}{' FROZEN' if self.chaos.frozen else ''}")
            time.sleep(0.1)
        self.thaw()
        self.t_writers_end = time.time()

    def stop_workers(self) -> None:
        """Readers stop now; writers finish (or, after a timeout or ^C, stop at their next call)."""
        (self.work / "stop-readers").touch()
        abort = self.timed_out or self.interrupted
        if abort:
            (self.work / "stop-all").touch()
        end = time.time() + (10.0 if abort else self.call_deadline + 35.0)
        for p in self.procs.values():
            p.join(timeout=max(0.1, end - time.time()))
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self.poll_logs()

    async def _list_all(self) -> list[dict[str, Any]]:
        async with anyio.create_task_group() as tg:
            group = SessionGroup(tg, self.home, self.env, self.work, marker=f"{self.marker}verify-",
                                 read_timeout_s=self.call_deadline + 60.0)
            try:
                (s,) = await group.start(1, learn_pids=False)
                return await all_memories(s, ["stress"])
            finally:
                await group.stop()

    def verify(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        err = None
        for attempt in range(3):
            try:
                return anyio.run(self._list_all), None
            except Exception as e:  # retried, then reported
                err = f"{type(e).__name__}: {e}"
                time.sleep(1 + attempt)
        return None, err

    def stop(self) -> None:
        """End the chaos (thaw a frozen owner) and stop the workers; runs however the chaos loop ended."""
        self.thaw()
        self.stop_workers()

    def finish(self) -> tuple[list[dict[str, Any]] | None, str | None, list[int]]:
        """Once the workers are stopped: reap this run's servers, verify the store; (stored, verify_error,
        reaped)."""
        reaped = processes.reap(self.marker)
        stored, verify_error = self.verify()
        reaped += processes.reap(self.marker)
        return stored, verify_error, reaped

    def cleanup(self, keep: bool) -> None:
        """Whatever happened: no frozen owner, no live worker or server of this run, temp folders gone
        (unless `keep`)."""
        self.thaw()
        for proc in self.procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        processes.reap(self.marker)
        self.chaos.close()
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)
            if self.own_home:
                shutil.rmtree(self.home, ignore_errors=True)
        else:
            sys.stderr.write(f"kept home {self.home} and logs {self.work}\n")

    def report(self, stored: list[dict[str, Any]] | None, verify_error: str | None,
               reaped: list[int]) -> dict[str, Any]:
        return build_report(self, stored, verify_error, reaped)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Stress many `clarity serve` sessions sharing one store.")
    p.add_argument("--writers", type=int, default=8, help="writer processes (each with its own server)")
    p.add_argument("--writes", type=int, default=200, help="memories stored by each writer")
    p.add_argument("--readers", type=int, default=0, help="reader processes calling retrieve_memory")
    p.add_argument("--mode", choices=("forward", "handoff"), default="forward")
    chaos = p.add_mutually_exclusive_group()
    chaos.add_argument("--kill-owner-every", type=float, metavar="S", help="SIGKILL the owner every S s")
    chaos.add_argument("--stop-owner-every", type=float, metavar="S", help="SIGSTOP the owner every S s")
    p.add_argument("--stop-for", type=float, metavar="S", help="how long a stopped owner stays frozen (S/2)")
    p.add_argument("--deadline-s", type=float, help="CLARITY_CALL_DEADLINE_S for the servers")
    p.add_argument("--home", help="store folder (default: a fresh temp folder, deleted afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temp home and the per-worker logs")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--timeout-s", type=float, default=900.0, help="bound on the whole run (default 900)")
    a = p.parse_args(argv)
    if a.writers < 1 or a.writes < 1 or a.readers < 0:
        p.error("--writers and --writes must be >= 1, --readers >= 0")
    for name in ("kill_owner_every", "stop_owner_every", "stop_for", "deadline_s", "timeout_s"):
        v = getattr(a, name)
        if v is not None and v <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    run = Run(a)
    res: dict[str, Any] | None = None
    try:
        run.t_start = time.time()
        run.start_workers()
        try:
            with progress(a.writers * a.writes, "acked") as bar:
                run.monitor(bar)
        except KeyboardInterrupt:
            run.interrupted = True
            sys.stderr.write("interrupted: stopping the workers, then verifying what was acknowledged\n")
        finally:
            run.stop()
        stored, verify_error, reaped = run.finish()
        res = run.report(stored, verify_error, reaped)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
    finally:
        run.cleanup(a.keep)
    if res is None:
        return 130
    print_summary(res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    if run.interrupted:
        return 130
    return 1 if failed(res) else 0


if __name__ == "__main__":
    sys.exit(main())
