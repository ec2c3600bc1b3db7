"""The stress run's report: errors by kind (expected or not), failover times, latencies, and the
exactly-once verdict of `ledger.verify`. `failed(res)` is the one rule for the exit status."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from tests.harness.ledger import acks_from_records, verify
from tests.harness.stats import summarize
from tests.harness.workers import served_after


def _errors(run: Any, records: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str], Counter[str],
                                                               dict[str, str]]:
    errors: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    samples: dict[str, str] = {}
    grace = run.call_deadline + 1
    for r in records:
        if r.get("ev") != "error":
            continue
        kind = r.get("kind", "unknown")
        if kind == "killed_session":
            expected[kind] += 1
            continue
        errors[kind] += 1
        samples.setdefault(kind, r.get("msg", ""))
        in_freeze = any(s["t_stop"] <= r["t1"] <= s.get("t_cont", math.inf) + grace for s in run.chaos.stops)
        if kind == "owner_unresponsive" and in_freeze:
            expected[kind] += 1
        else:
            unexpected[kind] += 1
    return errors, expected, unexpected, samples


def worker_outcomes(run: Any) -> tuple[list[dict[str, Any]], int, int]:
    """(crashed workers, writes given up, sessions started) from each worker's last `done` record and its
    exit code (0, or 3 for a worker whose parent went away)."""
    crashed, gave_up, sessions = [], 0, 0
    for name, recs in run.records.items():
        done = [r for r in recs if r.get("ev") == "done"]
        p = run.procs[name]
        if not done or done[-1].get("crashed") or (p.exitcode not in (0, 3)):
            crashed.append({"worker": name, "exitcode": p.exitcode,
                            "why": (done[-1].get("crashed") if done else "no done record")})
        if done:
            gave_up += int(done[-1].get("gave_up") or 0)
            sessions += int(done[-1].get("sessions") or 0)
    return crashed, gave_up, sessions


def build_report(run: Any, stored: list[dict[str, Any]] | None, verify_error: str | None,
                 reaped: list[int]) -> dict[str, Any]:
    a = run.a
    records = [r for recs in run.records.values() for r in recs]
    crashed, gave_up, sessions = worker_outcomes(run)
    acks = acks_from_records(records)
    successes = [(r["t0"], r["t1"]) for r in records if r.get("ev") in ("ack", "ok")]
    errors, expected, unexpected, samples = _errors(run, records)
    failover = []
    for k in run.chaos.kills:
        after = [t1 - k["t"] for t0, t1 in successes if served_after(t0, t1, k["t"])]
        k["failover_ms"] = round(min(after) * 1000, 1) if after else None
        if after:
            failover.append(min(after) * 1000)
    for s in run.chaos.stops:
        after = [t1 - s["t_cont"] for _t0, t1 in successes if t1 >= s["t_cont"]]
        s["freeze_ms"] = round((s["t_cont"] - s["t_stop"]) * 1000, 1)
        s["first_success_after_cont_ms"] = round(min(after) * 1000, 1) if after else None
    verdict = verify(acks, stored).as_dict() if stored is not None else None
    duration = max(1e-9, (run.t_writers_end or run.t_start) - run.t_start)
    return {
        "mode": a.mode, "writers": a.writers, "writes": a.writes, "readers": a.readers,
        "writes_total": a.writers * a.writes, "acked": len({x.content for x in acks}), "gave_up": gave_up,
        "stored": verdict["stored"] if verdict else None,
        "lost": verdict["lost"] if verdict else None, "lost_ids": verdict["lost_ids"] if verdict else [],
        "duplicates": verdict["duplicates"] if verdict else None,
        "content_mismatch": verdict["content_mismatch"] if verdict else None,
        "stored_not_acked": verdict["stored_not_acked"] if verdict else None,
        "dedup_acks": sum(1 for r in records if r.get("ev") == "ack" and r.get("dup")),
        "errors": dict(errors), "expected_errors": dict(expected), "unexpected_errors": dict(unexpected),
        "error_samples": samples, "killed_session_errors": expected.get("killed_session", 0),
        "owner_kills": len(run.chaos.kills), "owner_stops": len(run.chaos.stops),
        "chaos_skipped": dict(run.chaos.skipped),
        "store_ms": summarize([r["ms"] for r in records if r.get("ev") == "ack"], 2),
        "retrieve_ms": summarize([r["ms"] for r in records if r.get("ev") == "ok"], 2),
        "throughput_per_s": round(len(acks) / duration, 2), "duration_s": round(duration, 2),
        "failover_ms": summarize(failover, 1), "kills": run.chaos.kills, "stops": run.chaos.stops,
        "sessions_started": sessions, "crashed_workers": crashed, "timed_out": run.timed_out,
        "interrupted": run.interrupted, "verify_error": verify_error, "orphans_killed": len(reaped),
        "call_deadline_s": run.call_deadline,
        "home": str(run.home) if a.keep or not run.own_home else None,
        "work_dir": str(run.work) if a.keep else None,
    }


def failed(res: dict[str, Any]) -> bool:
    return bool(res["lost"] != 0 or res["duplicates"] != 0 or res["crashed_workers"] or res["timed_out"]
                or res["gave_up"] or res["verify_error"] or res["interrupted"])


def print_summary(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(d: dict[str, Any] | None) -> str:
        return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "none"

    def green(v: Any) -> str:
        return f"[{'green' if v == 0 else 'red'}]{v}[/]"

    t = Table(title=f"clarity stress: {res['writers']} writers x {res['writes']} writes, mode {res['mode']}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    sm, rm, fo = res["store_ms"], res["retrieve_ms"], res["failover_ms"]
    rows = [
        ("acked / total", f"{res['acked']} / {res['writes_total']}"
         + (f" (gave up {res['gave_up']})" if res["gave_up"] else "")),
        ("stored (tag stress)", str(res["stored"])),
        ("lost", green(res["lost"])), ("duplicates", green(res["duplicates"])),
        ("acked as duplicate_of", str(res["dedup_acks"])),
        ("errors (not killed_session)", fmt(res["errors"])),
        ("  of which unexpected", fmt(res["unexpected_errors"])),
        ("killed_session errors", str(res["killed_session_errors"])),
        ("owner kills / stops", f"{res['owner_kills']} / {res['owner_stops']}"),
        ("failover ms p50 / max", f"{fo['p50']} / {fo['max']}"),
        ("store ms p50 / p99 / max", f"{sm['p50']} / {sm['p99']} / {sm['max']}"),
        ("retrieve ms p50 / p99", f"{rm['p50']} / {rm['p99']} (n {rm['n']})"),
        ("throughput (acked/s)", str(res["throughput_per_s"])), ("duration s", str(res["duration_s"])),
        ("sessions started", str(res["sessions_started"])),
    ]
    if res["crashed_workers"]:
        rows.append(("crashed workers", ", ".join(c["worker"] for c in res["crashed_workers"])))
    if res["timed_out"]:
        rows.append(("timed out", "[red]yes[/]"))
    if res["verify_error"]:
        rows.append(("verify error", f"[red]{res['verify_error']}[/]"))
    if res["orphans_killed"]:
        rows.append(("leftover servers killed", str(res["orphans_killed"])))
    for k, v in rows:
        t.add_row(k, v)
    con = Console()
    con.print(t)
    if not failed(res):
        con.print("[green]OK[/]: everything acknowledged is stored, once")
    else:
        why = [w for w, bad in (("lost", res["lost"] != 0), ("duplicates", res["duplicates"] != 0),
                                ("crashed workers", res["crashed_workers"]), ("timed out", res["timed_out"]),
                                ("writes given up", res["gave_up"]), ("verification", res["verify_error"]),
                                ("interrupted", res["interrupted"])) if bad]
        con.print(f"[red]FAILED[/]: {', '.join(why)}")
