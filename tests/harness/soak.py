"""The soak run's writers and report (scripts/soak.py).

Writers are the stress run's (`tests.harness.workers.Worker`: one `clarity serve` per writer, restarted
when its server dies, every acknowledgement in its ledger); a soak writer has no fixed number of writes:
it stores distinct notes (optionally `gap_s` apart) until the file `<work>/stop-writers` appears, then
finishes the write in hand and exits. The report counts the chaos actions, checks every acknowledgement
with `ledger.verify` and measures failover exactly as the stress report does (kill -> next successful call
of any session, `workers.served_after`).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import signal
import sys
import time
from collections import Counter
from typing import Any

import anyio

from tests.harness.ledger import acks_from_records, verify
from tests.harness.stats import summarize
from tests.harness.stress_report import worker_outcomes
from tests.harness.workers import Worker, served_after


class SoakWorker(Worker):
    async def run_writer(self) -> int:
        stop = self.work / "stop-writers"
        gap = float(self.cfg.get("gap_s") or 0.0)
        acked = gave_up = seq = 0
        crashed = None
        try:
            while not stop.exists() and seq < self.cfg["writes"]:
                if not await self.write_one(seq):
                    gave_up = 1  # the write in hand (there is no fixed total)
                    break
                acked += 1
                seq += 1
                if gap:
                    await anyio.sleep(gap)
        except Exception as e:  # report and exit non-zero
            crashed = f"{type(e).__name__}: {e}"
        finally:
            await self.close_session()
            self.log.write(ev="done", t=time.time(), acked=acked, gave_up=gave_up,
                           crashed=crashed, sessions=self.session_no)
            self.log.close()
        return 2 if crashed else (3 if gave_up else 0)


async def _run(cfg: dict[str, Any]) -> int:
    async with anyio.create_task_group() as tg:
        code = await SoakWorker(cfg, tg).run_writer()
        tg.cancel_scope.cancel()
    return code


def soak_worker_entry(cfg: dict[str, Any]) -> None:
    """Process target (multiprocessing "spawn")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(asyncio.run(_run(cfg)))


def failovers(kills: list[dict[str, Any]], successes: list[tuple[float, float]]) -> list[float]:
    """Per kill, ms from the kill to the first successful call served after it (`served_after`); sets
    `failover_ms` on each kill record (None when no call succeeded after it)."""
    ok = sorted(successes, key=lambda s: s[1])
    ends = [t1 for _t0, t1 in ok]
    out = []
    for k in kills:
        t = k["t"]
        best = None
        for t0, t1 in ok[bisect.bisect_right(ends, t):]:
            if served_after(t0, t1, t):
                best = t1 - t
                break
        k["failover_ms"] = None if best is None else round(best * 1000, 1)
        if best is not None:
            out.append(best * 1000)
    return out


def build_soak_report(run: Any, stored: list[dict[str, Any]] | None, verify_error: str | None,
                      reaped: list[int], machine: dict[str, Any]) -> dict[str, Any]:
    a = run.a
    records = [r for recs in run.records.values() for r in recs]
    crashed, gave_up, sessions = worker_outcomes(run)
    acks = acks_from_records(records)
    successes = [(r["t0"], r["t1"]) for r in records if r.get("ev") in ("ack", "ok")]
    grace = run.call_deadline + 1
    errors: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for r in records:
        if r.get("ev") != "error":
            continue
        kind = r.get("kind", "unknown")
        errors[kind] += 1
        if kind == "killed_session":
            continue
        in_freeze = any(s["t_stop"] <= r["t1"] <= s.get("t_cont", math.inf) + grace for s in run.chaos.stops)
        if not (kind == "owner_unresponsive" and in_freeze):
            unexpected[kind] += 1
            samples.setdefault(kind, r.get("msg", ""))
    fo = failovers(run.chaos.kills, successes)
    verdict = verify(acks, stored).as_dict() if stored is not None else None
    duration = max(1e-9, (run.t_chaos_end or run.t_start) - run.t_start)
    first_ack = min((r["t1"] for r in records if r.get("ev") == "ack"), default=None)
    # seconds per owner kill over the chaos loop proper: from the first acknowledgement (the store made,
    # the first owner's model loaded) to the last kill's failover
    chaos_s = max(1e-9, (run.t_chaos_end or run.t_start) - (first_ack or run.t_start))
    kills = len(run.chaos.kills)
    return {
        "sessions": a.sessions, "owner_kills_target": a.owner_kills, "mode": a.mode,
        "owner_kills": kills, "standby_kills": len(run.chaos.standby_kills), "stops": len(run.chaos.stops),
        "backups": len(run.backups), "backup_failures": sum(1 for b in run.backups if not b["ok"]),
        "acked": len({x.content for x in acks}), "gave_up": gave_up,
        "stored": verdict["stored"] if verdict else None,
        "lost": verdict["lost"] if verdict else None, "duplicated": verdict["duplicates"] if verdict else None,
        "lost_ids": verdict["lost_ids"] if verdict else [],
        "stored_not_acked": verdict["stored_not_acked"] if verdict else None,
        "dedup_acks": sum(1 for r in records if r.get("ev") == "ack" and r.get("dup")),
        "failover_ms": summarize(fo, 1), "errors": dict(errors), "unexpected_errors": dict(unexpected),
        "error_samples": samples, "chaos_skipped": dict(run.chaos.skipped),
        "store_ms": summarize([r["ms"] for r in records if r.get("ev") == "ack"], 2),
        "duration_s": round(duration, 2),
        "startup_s": round(first_ack - run.t_start, 2) if first_ack else None,
        "s_per_owner_kill": round(chaos_s / kills, 3) if kills else None,
        "est_1000_kills_min": round(chaos_s / kills * 1000 / 60, 1) if kills else None,
        "total_s": round(run.t_end - run.t_start, 2),
        "pace_s": a.pace_s, "sessions_started": sessions, "crashed_workers": crashed,
        "timed_out": run.timed_out, "interrupted": run.interrupted, "verify_error": verify_error,
        "orphans_killed": len(reaped), "machine": machine,
        "kills": run.chaos.kills, "standby_kill_records": run.chaos.standby_kills, "stop_records": run.chaos.stops,
        "backup_records": run.backups,
    }


def soak_failed(res: dict[str, Any]) -> list[str]:
    """Why the run failed (empty: it passed)."""
    return [w for w, bad in (
        ("lost", res["lost"] != 0), ("duplicated", res["duplicated"] != 0),
        ("crashed workers", res["crashed_workers"]), ("writes given up", res["gave_up"]),
        ("timed out before the owner kills", res["timed_out"]), ("verification", res["verify_error"]),
        ("interrupted", res["interrupted"])) if bad]


def summary_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    fo, m = res["failover_ms"], res["machine"]
    return [
        ("sessions", str(res["sessions"])),
        ("owner kills (target)", f"{res['owner_kills']} ({res['owner_kills_target']})"),
        ("standby kills", str(res["standby_kills"])), ("stops (SIGSTOP/SIGCONT)", str(res["stops"])),
        ("backups (failed)", f"{res['backups']} ({res['backup_failures']})"),
        ("acks", str(res["acked"])), ("stored", str(res["stored"])),
        ("lost", str(res["lost"])), ("duplicated", str(res["duplicated"])),
        ("failover ms p50 / p99 / max", f"{fo['p50']} / {fo['p99']} / {fo['max']} (n {fo['n']})"),
        ("unexpected errors", ", ".join(f"{k} {v}" for k, v in res["unexpected_errors"].items()) or "none"),
        ("duration s (to the first ack)", f"{res['duration_s']} ({res['startup_s']})"),
        ("s per owner kill", str(res["s_per_owner_kill"])),
        ("est. 1,000 owner kills (min)", str(res["est_1000_kills_min"])),
        ("sessions started", str(res["sessions_started"])),
        ("machine", f"{m['nproc']} cpu {m['cpu_model']}, {m['mem_total_gib']} GiB, Python {m['python']}, "
                    f"load {' '.join(m['loadavg_start'])}, commit {m['git_commit'][:10]}"),
    ]


def print_soak_summary(res: dict[str, Any]) -> None:
    rows = summary_rows(res)
    w = max(len(k) for k, _ in rows)
    print(f"clarity soak: {res['sessions']} sessions, {res['owner_kills']} owner kills, mode {res['mode']}")
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}")
    why = soak_failed(res)
    print("FAILED: " + ", ".join(why) if why else "OK: every acknowledged write is stored exactly once")


def soak_markdown(res: dict[str, Any]) -> str:
    lines = ["# Soak: owner kills, standby kills, freezes and backups under writers", "",
             f"`python scripts/soak.py --sessions {res['sessions']} --owner-kills {res['owner_kills_target']}`"
             f" ({res['machine']['date']}). Verdict: "
             + ("**OK** (0 lost, 0 duplicated)" if not soak_failed(res) else
                "**FAILED**: " + ", ".join(soak_failed(res))), "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(res)]
    lines += ["", "Failover: SIGKILL of the owner -> the next successful call of any session. "
              "A disk-full window is not part of the soak (it needs a loop mount; tests/test_disk_full.py).", ""]
    return "\n".join(lines)
