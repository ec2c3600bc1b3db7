#!/usr/bin/env python
"""Clarity coordination benchmark, through MCP, with real `clarity serve` processes.

Every figure comes from one run on one machine. Each session is a real stdio MCP server started and
driven by `clarity.session_client.SessionClient`; all sessions of a scenario are driven concurrently
from one anyio event loop, each doing a fixed number of store_memory + retrieve_memory calls in
sequence. Stores are preloaded to 1k and 10k memories with `python -m clarity import` (once per size;
each scenario works on a fresh copy of the preloaded folder).

Scenarios, per store size:
  floor      one session alone (it still takes the lease, but nobody else competes for it)
  forward    N sessions, CLARITY_COORDINATION_MODE=forward (default): one owner, the others forward
             their calls to it over its Unix socket; reported for the owner and the non-owners
  handoff    N sessions taking turns owning the engine
  naive      N sessions, no lease: every call opens the engine, runs, closes; waits and retries while
             another process has it open (baseline)
  failover   N=4 forward sessions calling in a loop; the owner's server is SIGKILLed; time until
             another session's next successful call
  memory     VmRSS of every server process after its calls

Usage:
  python scripts/bench.py --quick          # ~1 minute: 1k only, N=2,4, naive N=2, 2 failovers
  python scripts/bench.py                  # full run: 1k and 10k, N=2,4,8, 5 failovers per size
  python scripts/bench.py --out DIR        # write results.json/.md/.png to DIR (default docs/bench)

Writes DIR/results.json (all raw figures + machine info), DIR/results.md (markdown tables) and
DIR/results.png (chart). Every child process is stopped at the end; every loop is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from clarity.session_client import SessionClient

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------
# realistic, varied memory contents (word lists, fixed seed)

PEOPLE = ["Alice", "Bob", "Priya", "Chen", "Fatima", "Lukas", "Mateo", "Sofia", "Kenji", "Amara",
          "Olga", "Diego", "Hannah", "Ravi", "Zoe", "Tomas"]
COMPONENTS = ["auth service", "billing worker", "search index", "payment gateway", "session cache",
              "rate limiter", "email queue", "CSV exporter", "image resizer", "feature flag client",
              "GraphQL resolver", "retry middleware", "audit log", "config loader", "webhook dispatcher",
              "migration runner", "metrics exporter", "PDF renderer", "job scheduler", "websocket hub",
              "upload handler", "notification service", "inventory sync", "tax calculator"]
MODULES = ["api/handlers", "core/models", "workers/billing", "infra/terraform", "web/components",
           "lib/http", "db/migrations", "services/search", "cli/commands", "tests/integration",
           "pkg/cache", "internal/queue", "frontend/store", "scripts/deploy", "shared/utils"]
VERBS = ["rewrite", "split", "cache", "deprecate", "rename", "parallelize", "inline", "vendor",
         "pin", "shard", "debounce", "batch", "memoize", "instrument", "feature-flag", "document"]
ADJS = ["legacy", "flaky", "slow", "new", "async", "experimental", "shared", "internal", "public",
        "nightly", "critical", "stateless", "read-only", "multi-tenant"]
REASONS = ["p99 latency doubled under load", "the vendor SDK leaks file handles",
           "two teams kept editing the same file", "the old schema cannot store time zones",
           "it blocked the release train twice", "customers hit timeouts on large accounts",
           "the test suite took forty minutes", "memory grew without bound in staging",
           "the API contract changed in version 3", "on-call got paged every weekend",
           "it silently dropped retries", "cold starts exceeded two seconds",
           "security review flagged plaintext tokens", "the cache hit rate fell below half"]
TOOLS = ["pytest", "ruff", "mypy", "Docker Compose", "Terraform", "Postgres", "Redis", "SQLite",
         "Kafka", "Celery", "httpx", "pydantic", "uv", "Poetry", "GitHub Actions", "Grafana",
         "Sentry", "OpenTelemetry", "Playwright", "esbuild"]
TASKS = ["local development", "integration tests", "schema migrations", "load testing", "CI caching",
         "error tracking", "feature previews", "background jobs", "dependency updates", "code review"]
FAILS = ["times out", "returns stale data", "crashes with a KeyError", "double-charges", "deadlocks",
         "loses the last message", "logs secrets", "spins at full CPU", "rejects valid input"]
CONDITIONS = ["the queue has more than ten thousand items", "two requests share an idempotency key",
              "the clock jumps backwards", "the upstream returns a 429", "a tenant has no region set",
              "the payload is larger than one megabyte", "the connection pool is exhausted",
              "daylight saving time starts", "a user has an emoji in their name"]
FIXES = ["restart the worker with a smaller batch size", "set the retry budget to three",
         "clear the cache key by hand", "bump the pool size to forty", "pin the client to 2.4",
         "run the migration in two steps", "turn on the circuit breaker", "disable HTTP/2",
         "drain the queue before deploying"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the next sprint", "the quarter end"]
EVENTS = ["release freeze", "security audit", "launch", "demo", "migration window", "load test"]

TEMPLATES = [
    "We decided to {verb} the {adj} {component} in {module} because {reason} (see PR #{n}).",
    "{person} prefers {tool} over {tool2} for {task}; agreed in the review of PR #{n}.",
    "The {component} {fails} when {condition}; the workaround is to {fix} (incident {n}).",
    "Remember that {module} depends on {tool} {major}.{minor}, so upgrading it breaks the {component}.",
    "TODO: {verb} the {adj} {component} before the {event} on {day}, owner {person}, ticket {n}.",
    "Fact: the {component} is owned by {person}'s team and deploys from {module} via {tool} (run {n}).",
    "Decision {n}: keep the {adj} {component} but {verb} it, since {reason}.",
    "Note from {person}: when {condition}, the {component} {fails}; we should {fix}.",
    "Preference: use {tool} for {task}, never {tool2}; {person} measured it on build {n}.",
    "Bug {n} in {module}: the {adj} {component} {fails} if {condition}.",
]
QUERIES = [
    "why did we {verb} the {component}?",
    "what does {person} prefer for {task}",
    "{component} {fails} workaround",
    "which tool do we use for {task}",
    "who owns the {component}",
    "known problems when {condition}",
    "decisions about the {adj} {component} in {module}",
    "what breaks if we upgrade {tool}",
]


def _fill(rng: random.Random, template: str) -> str:
    tool, tool2 = rng.sample(TOOLS, 2)
    return template.format(
        person=rng.choice(PEOPLE), component=rng.choice(COMPONENTS), module=rng.choice(MODULES),
        verb=rng.choice(VERBS), adj=rng.choice(ADJS), reason=rng.choice(REASONS), tool=tool, tool2=tool2,
        task=rng.choice(TASKS), fails=rng.choice(FAILS), condition=rng.choice(CONDITIONS),
        fix=rng.choice(FIXES), day=rng.choice(DAYS), event=rng.choice(EVENTS), n=rng.randint(100, 99999),
        major=rng.randint(1, 9), minor=rng.randint(0, 30))


class Corpus:
    """Unique sentences (store contents) and queries, deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: set[str] = set()

    def sentence(self) -> str:
        for _ in range(1000):
            s = _fill(self.rng, self.rng.choice(TEMPLATES))
            if s not in self.seen:
                self.seen.add(s)
                return s
        raise RuntimeError("could not make a unique sentence")

    def query(self) -> str:
        return _fill(self.rng, self.rng.choice(QUERIES))


def preload_file(path: Path, count: int, seed: int) -> None:
    corpus = Corpus(seed)
    urng = random.Random(seed + 1)
    memories = [{"id": str(uuid.UUID(int=urng.getrandbits(128), version=4)), "content": corpus.sentence(),
                 "memory_type": "note", "tags": ["bench"]} for _ in range(count)]
    path.write_text(json.dumps({"memories": memories}))


# ---------------------------------------------------------------------------------------------------
# machine info, process info

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next((int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines()
                   if ln.startswith("MemTotal:")), 0)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "clarity"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    versions = {}
    for pkg in ("mcp", "qdrant-client", "fastembed", "onnxruntime", "alunai-clarity"):
        try:
            from importlib.metadata import version
            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = None
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(), "cpu_model": cpu, "mem_total_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": commit, "clarity_dirty": dirty, "versions": versions,
        "loadavg_start": _read("/proc/loadavg").split()[:3],
    }


def rss_kb(pid: int) -> int | None:
    for ln in _read(f"/proc/{pid}/status").splitlines():
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return None


ALL_PIDS: set[int] = set()
WORKDIR = {"path": ""}


def _is_our_server(pid: int) -> bool:
    """A `clarity serve` of this run (its --home is in our scratch folder: a reused pid is not)."""
    cmd = _read(f"/proc/{pid}/cmdline").split("\0")
    return ("clarity" in cmd and "serve" in cmd and bool(WORKDIR["path"])
            and any(c.startswith(WORKDIR["path"]) for c in cmd))


def kill_leftovers() -> list[int]:
    """SIGKILL any `clarity serve` process this run started that is still alive."""
    killed = []
    for pid in sorted(ALL_PIDS):
        if _is_our_server(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


# ---------------------------------------------------------------------------------------------------
# statistics

def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}
    return {"n": len(values), "p50": round(pct(values, 50) or 0, 3), "p99": round(pct(values, 99) or 0, 3),
            "mean": round(sum(values) / len(values), 3), "max": round(max(values), 3)}


# ---------------------------------------------------------------------------------------------------
# sessions

@dataclass
class Session:
    idx: int
    home: Path
    mode: str
    errlog_path: Path
    client: SessionClient | None = None
    pid: int | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    start_error: str | None = None
    store_ms: list[float] = field(default_factory=list)
    retrieve_ms: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    status_warm: dict[str, Any] | None = None
    status_end: dict[str, Any] | None = None
    rss_kb: int | None = None

    async def run(self) -> None:
        """Own the client's context in this task (anyio scopes must be exited where entered)."""
        env = {"CLARITY_COORDINATION_MODE": self.mode, "CLARITY_SESSION_ID": f"bench-{self.idx}"}
        try:
            with self.errlog_path.open("a") as errlog:
                async with SessionClient(self.home, env=env, errlog=errlog) as s:
                    self.client = s
                    self.ready.set()
                    with anyio.fail_after(3600):
                        await self.stop.wait()
        except Exception as e:  # a killed server may end its client with errors: never fatal here
            if not self.ready.is_set():
                self.start_error = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()
            self.done.set()

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        assert self.client is not None, self.start_error
        return await self.client.call(tool, args)

    async def timed(self, op: str, args: dict[str, Any]) -> tuple[float, float, bool]:
        """One call; returns (start, end, ok) with perf_counter times; records latency or error."""
        tool = "store_memory" if op == "store" else "retrieve_memory"
        t0 = time.perf_counter()
        try:
            await self.call(tool, args)
            ok = True
        except Exception as e:
            ok = False
            self.errors.append({"op": op, "error": f"{type(e).__name__}: {str(e)[:300]}",
                                "ms": round((time.perf_counter() - t0) * 1000, 3)})
        t1 = time.perf_counter()
        if ok:
            (self.store_ms if op == "store" else self.retrieve_ms).append((t1 - t0) * 1000)
        return t0, t1, ok

    async def status(self) -> dict[str, Any]:
        st = await self.call("coordination_status")
        self.pid = st["this_process"]["pid"]
        ALL_PIDS.add(self.pid)
        return st


class Group:
    """N sessions, each in its own task of one task group."""

    def __init__(self, tg: Any, home: Path, mode: str, logdir: Path) -> None:
        self.tg = tg
        self.home = home
        self.mode = mode
        self.logdir = logdir
        self.sessions: list[Session] = []
        self._next = 0

    async def start(self, n: int) -> list[Session]:
        new = []
        for _ in range(n):
            s = Session(self._next, self.home, self.mode, self.logdir / f"server-{self._next}.log")
            self._next += 1
            self.tg.start_soon(s.run)
            new.append(s)
        with anyio.fail_after(120):
            for s in new:
                await s.ready.wait()
        bad = [s.start_error for s in new if s.start_error]
        if bad:
            raise RuntimeError(f"a session did not start: {bad[0]} (see {self.logdir})")
        for s in new:
            await s.status()
        self.sessions.extend(new)
        return new

    async def stop(self, sessions: list[Session] | None = None) -> None:
        targets = self.sessions if sessions is None else sessions
        for s in targets:
            s.stop.set()
        with anyio.move_on_after(60):
            for s in targets:
                await s.done.wait()


async def warm_up(sessions: list[Session], corpus: Corpus) -> None:
    """The first session calls first (it becomes the owner in forward mode), then the others."""
    with anyio.fail_after(300):
        await sessions[0].call("retrieve_memory", {"query": corpus.query()})
        async with anyio.create_task_group() as tg:
            for s in sessions[1:]:
                tg.start_soon(s.call, "retrieve_memory", {"query": corpus.query()})


async def owner_pid(sessions: list[Session]) -> int | None:
    for s in sessions:
        with contextlib.suppress(Exception):
            st = await s.call("coordination_status")
            if st.get("owner"):
                return int(st["owner"]["pid"])
    return None


# ---------------------------------------------------------------------------------------------------
# scenarios

def fresh_home(preloaded: Path, workdir: Path, name: str) -> Path:
    home = workdir / name
    shutil.copytree(preloaded, home, symlinks=True, ignore=shutil.ignore_patterns("logs", "*.log"))
    (home / "logs").mkdir(exist_ok=True)
    return home


async def run_load(size: int, mode: str, n: int, calls: int, preloaded: Path, workdir: Path,
                   seed: int, label: str) -> dict[str, Any]:
    name = f"{size}-{mode}-{n}"
    home = fresh_home(preloaded, workdir, name)
    logdir = workdir / "logs" / name
    logdir.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(seed)
    out: dict[str, Any] = {"size": size, "mode": mode, "n": n, "label": label, "calls_per_session": calls,
                           "loadavg_before": _read("/proc/loadavg").split()[:3]}
    async with anyio.create_task_group() as tg:
        group = Group(tg, home, mode, logdir)
        try:
            t_start = time.perf_counter()
            sessions = await group.start(n)
            out["start_s"] = round(time.perf_counter() - t_start, 3)
            t_warm = time.perf_counter()
            await warm_up(sessions, corpus)
            out["warm_s"] = round(time.perf_counter() - t_warm, 3)
            for s in sessions:
                s.status_warm = await s.call("coordination_status")
            plans = {s.idx: [(corpus.sentence(), corpus.query()) for _ in range(calls)] for s in sessions}
            go = anyio.Event()

            async def drive(s: Session) -> None:
                await go.wait()
                for content, query in plans[s.idx]:
                    await s.timed("store", {"content": content, "memory_type": "note", "tags": ["bench"]})
                    await s.timed("retrieve", {"query": query, "limit": 5})

            t0 = time.perf_counter()
            with anyio.fail_after(1800):
                async with anyio.create_task_group() as inner:
                    for s in sessions:
                        inner.start_soon(drive, s)
                    t0 = time.perf_counter()
                    go.set()
            wall = time.perf_counter() - t0
            for s in sessions:
                s.status_end = await s.call("coordination_status")
                s.rss_kb = rss_kb(s.pid) if s.pid else None
        finally:
            await group.stop()
    total_calls = sum(len(s.store_ms) + len(s.retrieve_ms) for s in sessions)
    out["wall_s"] = round(wall, 3)
    out["throughput_calls_s"] = round(total_calls / wall, 2) if wall > 0 else None
    owner_warm = (sessions[0].status_warm or {}).get("owner") or {}
    out["owner_pid_after_warmup"] = owner_warm.get("pid")
    out["epoch_after_warmup"] = owner_warm.get("epoch")
    owner_end = (sessions[0].status_end or {}).get("owner") or {}
    out["owner_pid_end"] = owner_end.get("pid")
    out["epoch_end"] = owner_end.get("epoch")
    out["sessions"] = [{
        "idx": s.idx, "pid": s.pid,
        "role_after_warmup": (s.status_warm or {}).get("this_process", {}).get("role"),
        "role_end": (s.status_end or {}).get("this_process", {}).get("role"),
        "model_loaded_end": (s.status_end or {}).get("this_process", {}).get("model_loaded"),
        "engine_open_end": (s.status_end or {}).get("this_process", {}).get("engine_open"),
        "rss_kb": s.rss_kb,
        "store_ms": [round(x, 3) for x in s.store_ms], "retrieve_ms": [round(x, 3) for x in s.retrieve_ms],
        "errors": s.errors,
    } for s in sessions]
    groups: dict[str, list[dict[str, Any]]] = {"all": out["sessions"]}
    if mode == "forward":
        groups["owner"] = [x for x in out["sessions"] if x["pid"] == out["owner_pid_after_warmup"]]
        groups["non-owner"] = [x for x in out["sessions"] if x["pid"] != out["owner_pid_after_warmup"]]
    out["summary"] = {
        g: {"sessions": len(xs),
            "store": summarize([v for x in xs for v in x["store_ms"]]),
            "retrieve": summarize([v for x in xs for v in x["retrieve_ms"]]),
            "errors": sum(len(x["errors"]) for x in xs)}
        for g, xs in groups.items()
    }
    rss = [x["rss_kb"] for x in out["sessions"] if x["rss_kb"]]
    owner_rss = [x["rss_kb"] for x in groups.get("owner", []) if x["rss_kb"]]
    peer_rss = [x["rss_kb"] for x in groups.get("non-owner", []) if x["rss_kb"]]
    out["memory"] = {
        "total_rss_mib": round(sum(rss) / 1024, 1),
        "owner_rss_mib": round(owner_rss[0] / 1024, 1) if owner_rss else None,
        "non_owner_rss_mib_mean": round(sum(peer_rss) / len(peer_rss) / 1024, 1) if peer_rss else None,
        "processes_with_model_loaded": sum(1 for x in out["sessions"] if x["model_loaded_end"]),
        "processes_with_engine_open": sum(1 for x in out["sessions"] if x["engine_open_end"]),
    }
    return out


class _FailoverLoop:
    """Sessions calling in a loop (store, retrieve, ...) until `stop`; notes every call."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.log: list[tuple[int, float, float, bool]] = []
        self.stop = anyio.Event()
        self.seen_after = anyio.Event()
        self.t_kill = float("inf")

    async def loop(self, s: Session) -> None:
        for i in range(100_000):
            if self.stop.is_set():
                return
            op = "store" if i % 2 == 0 else "retrieve"
            args = ({"content": self.corpus.sentence(), "tags": ["bench"]} if op == "store"
                    else {"query": self.corpus.query()})
            t0, t1, ok = await s.timed(op, args)
            self.log.append((s.idx, t0, t1, ok))
            if ok and t0 >= self.t_kill:
                self.seen_after.set()


async def run_failover(size: int, reps: int, n: int, preloaded: Path, workdir: Path,
                       seed: int) -> dict[str, Any]:
    name = f"{size}-failover"
    home = fresh_home(preloaded, workdir, name)
    logdir = workdir / "logs" / name
    logdir.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(seed)
    results: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:
        group = Group(tg, home, "forward", logdir)
        try:
            live = await group.start(n)
            await warm_up(live, corpus)
            for rep in range(reps):
                victim_pid = await owner_pid(live)
                victims = [s for s in live if s.pid == victim_pid]
                if not victims:
                    results.append({"rep": rep, "error": f"owner pid {victim_pid} is not a session's"})
                    break
                victim = victims[0]
                others = [s for s in live if s is not victim]
                fl = _FailoverLoop(corpus)
                with anyio.fail_after(300):
                    async with anyio.create_task_group() as inner:
                        for s in others:
                            inner.start_soon(fl.loop, s)
                        await anyio.sleep(0.5)  # steady state: everyone forwarding to the owner
                        fl.t_kill = time.perf_counter()
                        os.kill(victim.pid or 0, signal.SIGKILL)
                        with anyio.move_on_after(90):
                            await fl.seen_after.wait()
                        await anyio.sleep(0.3)
                        fl.stop.set()
                t_kill, log = fl.t_kill, fl.log
                rec: dict[str, Any] = {"rep": rep, "killed_pid": victim.pid}
                # recovery: kill -> end of the first successful call started after the kill (a call
                # that ends just after the kill may have been answered by the owner before it died)
                started_after = [t1 for _i, t0, t1, ok in log if ok and t0 >= t_kill]
                spanning = [t1 - t0 for _i, t0, t1, ok in log if t0 < t_kill <= t1]
                done_after = [t1 for _i, _t0, t1, ok in log if ok and t1 >= t_kill]
                rec["recovery_ms"] = (round((min(started_after) - t_kill) * 1000, 3)
                                      if started_after else None)
                rec["longest_call_in_flight_at_kill_ms"] = (round(max(spanning) * 1000, 3)
                                                            if spanning else None)
                rec["first_completion_after_kill_ms"] = (round((min(done_after) - t_kill) * 1000, 3)
                                                         if done_after else None)
                rec["errors_during"] = sum(1 for _i, _t0, t1, ok in log if not ok and t1 >= t_kill)
                rec["calls_during"] = len(log)
                live = others
                rec["new_owner_pid"] = await owner_pid(live)
                rec["new_owner_is_session"] = rec["new_owner_pid"] in {s.pid for s in live}
                results.append(rec)
                await group.stop([victim])
                # back to N sessions for the next repetition
                fresh = await group.start(1)
                with anyio.fail_after(120):
                    await fresh[0].call("retrieve_memory", {"query": corpus.query()})
                live = live + fresh
        finally:
            await group.stop()
    errors = [e for s in group.sessions for e in s.errors]
    recovery = [r["recovery_ms"] for r in results if r.get("recovery_ms") is not None]
    stalls = [r["longest_call_in_flight_at_kill_ms"] for r in results
              if r.get("longest_call_in_flight_at_kill_ms") is not None]
    return {"size": size, "n": n, "reps": results,
            "recovery": summarize(recovery), "in_flight_stall": summarize(stalls),
            "errors": errors[:20], "error_count": len(errors)}


# ---------------------------------------------------------------------------------------------------
# output

def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def fmt_mib(v: float | None) -> str:
    return "-" if not v else f"{v:.0f}"


def fmt_ratio(v: float | None, base: float | None) -> str:
    if v is None or not base:
        return "-"
    r = v / base
    return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (size, scenario, role) with p50/p99 and ratios against the floor."""
    rows = []
    floors = {sc["size"]: sc["summary"]["all"] for sc in results["scenarios"] if sc["mode"] == "floor"}
    for sc in results["scenarios"]:
        floor = floors.get(sc["size"])
        roles = ["all"] if sc["mode"] != "forward" else ["owner", "non-owner"]
        for role in roles:
            sm = sc["summary"][role]
            row = {"size": sc["size"], "scenario": sc["label"], "mode": sc["mode"], "n": sc["n"],
                   "role": "single session" if sc["mode"] == "floor" else role,
                   "errors": sm["errors"], "throughput": sc["throughput_calls_s"],
                   "pairs": sc["calls_per_session"]}
            for op in ("store", "retrieve"):
                for q in ("p50", "p99"):
                    v = sm[op][q]
                    row[f"{op}_{q}"] = v
                    base = floor[op][q] if floor else None
                    row[f"{op}_{q}_x"] = round(v / base, 3) if v is not None and base else None
            rows.append(row)
    return rows


def latency_cells(results: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """Each table row with its four latency cells: "p50/p99 time (ratio against the floor)"."""
    floors = {sc["size"]: sc["summary"]["all"] for sc in results["scenarios"] if sc["mode"] == "floor"}
    out = []
    for r in results["rows"]:
        f = floors.get(r["size"])
        cells = []
        for op in ("store", "retrieve"):
            for q in ("p50", "p99"):
                base = f[op][q] if f else None
                cells.append(f"{fmt_ms(r[f'{op}_{q}'])} ({fmt_ratio(r[f'{op}_{q}'], base)})")
        out.append((r, cells))
    return out


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=160)
    t = Table(title="Latency per call through MCP (ms), ratio against the single session (floor)")
    for c in ("size", "scenario", "role", "pairs", "store p50", "store p99", "retrieve p50", "retrieve p99",
              "calls/s", "err"):
        t.add_column(c, justify="right" if c not in ("scenario", "role") else "left")
    for r, cells in latency_cells(results):
        t.add_row(f"{r['size']:,}", r["scenario"], r["role"], str(r["pairs"]), *cells,
                  fmt_rate(r["throughput"]), str(r["errors"]))
    con.print(t)
    if results["failover"]:
        ft = Table(title="Failover: N=4 forward sessions, owner SIGKILLed (ms)")
        for c in ("size", "kills", "recovery p50", "recovery max", "in-flight call p50", "in-flight call max",
                  "failed calls"):
            ft.add_column(c, justify="right")
        for fo in results["failover"]:
            a, b = fo["recovery"], fo["in_flight_stall"]
            ft.add_row(f"{fo['size']:,}", str(len(fo["reps"])), fmt_ms(a["p50"]), fmt_ms(a["max"]),
                       fmt_ms(b["p50"]), fmt_ms(b["max"]), str(fo["error_count"]))
        con.print(ft)
    mt = Table(title="Memory: total VmRSS of the N server processes (MiB) after their calls")
    for c in ("size", "scenario", "total", "× single", "owner", "non-owner (mean)", "model loaded in"):
        mt.add_column(c, justify="right" if c != "scenario" else "left")
    singles = {sc["size"]: sc["memory"]["total_rss_mib"] for sc in results["scenarios"]
               if sc["mode"] == "floor"}
    for sc in results["scenarios"]:
        m = sc["memory"]
        mt.add_row(f"{sc['size']:,}", sc["label"], f"{m['total_rss_mib']:.0f}",
                   fmt_ratio(m["total_rss_mib"], singles.get(sc["size"])),
                   fmt_mib(m["owner_rss_mib"]), fmt_mib(m["non_owner_rss_mib_mean"]),
                   f"{m['processes_with_model_loaded']}/{sc['n']}")
    con.print(mt)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    mi = results["machine"]
    lines = [
        f"Measured {mi['date'][:10]} on {mi['cpu_model']}, {mi['nproc']} cores, {mi['mem_total_gib']} GiB, "
        f"Python {mi['python']}, commit `{mi['git_commit'][:10]}`"
        f"{' (clarity/ modified)' if mi['clarity_dirty'] else ''}; "
        f"one run of `python scripts/bench.py{' --quick' if results['config']['quick'] else ''}` "
        f"({results['wall_s'] / 60:.1f} min). Every call goes through MCP to a real `clarity serve`; "
        "all sessions of a row call concurrently, each doing `pairs` × (store_memory, then "
        "retrieve_memory with limit 5) in sequence. "
        "Times in ms; (×) is the ratio against one session alone (the floor) at the same store size. "
        "A shared machine: expect noise.",
        "",
        "| memories | scenario | sessions | pairs | store p50 | store p99 | retrieve p50 | retrieve p99 "
        "| calls/s | errors |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, cells in latency_cells(results):
        lines.append(f"| {r['size']:,} | {r['scenario']} | {r['role']} | {r['pairs']} | " + " | ".join(cells)
                     + f" | {fmt_rate(r['throughput'])} | {r['errors']} |")
    notes = ["", "calls/s: all sessions of the row together. In handoff mode a session runs its calls "
             "itself while it holds its turn (fast) and the others wait for theirs, so p50 flatters it: p99 "
             "and calls/s show the cost of reopening the engine at every turn. Naive reopens the engine at "
             "every call."]
    for sc in results["scenarios"]:
        errs = [e for x in sc["sessions"] for e in x["errors"]]
        if errs:
            msg = errs[0]["error"].split("Error executing tool ")[-1][:160]
            notes.append(f"Errors in {sc['label']} at {sc['size']:,} memories: {len(errs)}, e.g. `{msg}`.")
    lines += [notes[0], " ".join(notes[1:])]
    if results["failover"]:
        lines += ["", "Failover: N=4 forward sessions, the non-owners calling in a loop; the owner's server "
                  "is SIGKILLed. Recovery: from the kill to the end of the first successful call another "
                  "session started after the kill. In-flight call: the longest call that was running at the "
                  "kill (it waits, then succeeds: the failover is transparent). Times in ms.", "",
                  "| memories | kills | recovery p50 | recovery max | in-flight call p50 "
                  "| in-flight call max | failed calls |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for fo in results["failover"]:
            a, b = fo["recovery"], fo["in_flight_stall"]
            lines.append(f"| {fo['size']:,} | {len(fo['reps'])} | {fmt_ms(a['p50'])} | {fmt_ms(a['max'])} | "
                         f"{fmt_ms(b['p50'])} | {fmt_ms(b['max'])} | {fo['error_count']} |")
    lines += ["", "Memory (VmRSS of the server processes after their calls, MiB). In forward mode only the "
              "owner loads the embedding model and opens the engine; non-owners never do.", "",
              "| memories | scenario | total | × one session | owner | non-owner (mean) | model loaded in |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    singles = {sc["size"]: sc["memory"]["total_rss_mib"] for sc in results["scenarios"]
               if sc["mode"] == "floor"}
    for sc in results["scenarios"]:
        m = sc["memory"]
        lines.append(f"| {sc['size']:,} | {sc['label']} | {m['total_rss_mib']:.0f} | "
                     f"{fmt_ratio(m['total_rss_mib'], singles.get(sc['size']))} | "
                     f"{fmt_mib(m['owner_rss_mib'])} | {fmt_mib(m['non_owner_rss_mib_mean'])} | "
                     f"{m['processes_with_model_loaded']}/{sc['n']} |")
    su = results.get("startup")
    if su:
        lines += ["", f"Startup ({su['reps']} runs, {su['size']:,} memories): spawn of `clarity serve` to "
                  f"`initialize` answered p50 {fmt_ms(su['initialize']['p50'])} ms (max "
                  f"{fmt_ms(su['initialize']['max'])}); the first tool call of a lone session, which takes the "
                  f"lease, opens the engine and loads the model, p50 {fmt_ms(su['first_call_cold']['p50'])} ms."]
    pre = results["preload"]
    lines += ["", "Preloading with `clarity import`: " + ", ".join(
        f"{int(k):,} memories in {v['import_s']:.1f} s" for k, v in pre.items()) + "."]
    path.write_text("\n".join(lines) + "\n")


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in results["rows"]})
    fig, axes = plt.subplots(len(sizes), 1, figsize=(14, 5.2 * len(sizes)), squeeze=False)
    for ax, size in zip(axes[:, 0], sizes, strict=True):
        rows = [r for r in results["rows"] if r["size"] == size]
        labels = [r["scenario"].replace(" (floor)", "\n(floor)")
                  + ("" if r["role"] in ("all", "single session") else f"\n{r['role']}") for r in rows]
        x = list(range(len(rows)))
        w = 0.38
        sp = [r["store_p50"] or 0 for r in rows]
        rp = [r["retrieve_p50"] or 0 for r in rows]
        s99 = [r["store_p99"] or 0 for r in rows]
        r99 = [r["retrieve_p99"] or 0 for r in rows]
        b1 = ax.bar([i - w / 2 for i in x], sp, w, label="store_memory p50", color="#3b75af")
        b2 = ax.bar([i + w / 2 for i in x], rp, w, label="retrieve_memory p50", color="#ef8636")
        ax.scatter([i - w / 2 for i in x], s99, marker="_", s=260, color="#1b3a5a", zorder=3,
                   label="store p99")
        ax.scatter([i + w / 2 for i in x], r99, marker="_", s=260, color="#8a4210", zorder=3,
                   label="retrieve p99")
        for bars, vals in ((b1, sp), (b2, rp)):
            for b, v in zip(bars, vals, strict=True):
                text = fmt_ms(v) if v < 1000 else f"{v / 1000:.1f}s"
                ax.annotate(text, (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_ylabel("ms per call (log scale)")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(f"{size:,} memories: latency per MCP call, concurrent sessions")
        ax.grid(axis="y", which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left", ncol=4)
    mi = results["machine"]
    fig.suptitle(f"Clarity coordination benchmark, {mi['date'][:10]}, {mi['nproc']} cores "
                 f"({mi['cpu_model']}), commit {mi['git_commit'][:10]}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# main

def preload(size: int, workdir: Path, seed: int, cache: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """A home holding `size` memories, made with `clarity import` (or copied from `cache`, where a
    previous run with --preload-cache left it)."""
    home = workdir / f"preloaded-{size}"
    cached = cache / f"preloaded-{size}-seed{seed}" if cache else None
    if cached is not None and (cached / "bench-preload.json").exists():
        shutil.copytree(cached, home, symlinks=True)
        info = json.loads((cached / "bench-preload.json").read_text())
        return home, {**info, "from_cache": str(cached)}
    data = workdir / f"preload-{size}.json"
    preload_file(data, size, seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "clarity", "import", str(data), "--home", str(home), "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"import of {size} memories failed: {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout)
    if res.get("imported") != size:
        raise RuntimeError(f"import of {size} memories: {res}")
    qbytes = sum(p.stat().st_size for p in (home / "qdrant").rglob("*") if p.is_file())
    info = {"import_s": round(took, 2), "imported": res["imported"], "qdrant_bytes": qbytes}
    if cached is not None:
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(home, cached, symlinks=True)
        (cached / "bench-preload.json").write_text(json.dumps(info))
    return home, info


def calls_for(args: argparse.Namespace, mode: str, size: int) -> int:
    """store+retrieve pairs per session. Handoff and naive reopen the engine on most calls (seconds
    at 10k memories), so they do fewer calls to keep the whole run within ~15-20 minutes."""
    explicit = {"floor": args.calls, "forward": args.calls, "handoff": args.calls_handoff,
                "naive": args.calls_naive}[mode]
    if explicit:
        return int(explicit)
    if args.quick:
        return {"floor": 8, "forward": 8, "handoff": 3, "naive": 3}[mode]
    big = size >= 5000
    return {"floor": 25, "forward": 25, "handoff": 3 if big else 6, "naive": 2 if big else 5}[mode]


def say(*a: Any) -> None:
    print(*a, flush=True)


async def measure_startup(home: Path, workdir: Path, reps: int) -> dict[str, Any]:
    """Spawn -> `initialize` answered (what an MCP client waits for at start), and the first tool call
    of a lone session, which takes the lease, opens the engine and loads the model."""
    init_ms, first_ms = [], []
    for _ in range(reps):
        with (workdir / "startup.stderr").open("a") as errlog:
            t0 = time.perf_counter()
            async with SessionClient(home, errlog=errlog) as s:
                t1 = time.perf_counter()
                await s.call("retrieve_memory", {"query": "warm up", "limit": 1})
                t2 = time.perf_counter()
                st = await s.call("coordination_status")
                ALL_PIDS.add(st["this_process"]["pid"])
        init_ms.append((t1 - t0) * 1000)
        first_ms.append((t2 - t1) * 1000)
    return {"reps": reps, "initialize": summarize(init_ms), "first_call_cold": summarize(first_ms)}


async def bench(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    for size in args.sizes:
        say(f"[{time.strftime('%H:%M:%S')}] preloading {size:,} memories with `clarity import` ...")
        home, info = preload(size, workdir, seed=1000 + size,
                             cache=Path(args.preload_cache) if args.preload_cache else None)
        results["preload"][str(size)] = info
        say(f"    imported in {info['import_s']:.1f} s" + (" (copied from the cache)" if "from_cache" in info
                                                          else ""))
        if "startup" not in results:
            results["startup"] = {"size": size, **await measure_startup(home, workdir, 3 if args.quick else 5)}
            su = results["startup"]
            say(f"    startup: initialize p50 {fmt_ms(su['initialize']['p50'])} ms, first call (cold owner) "
                f"p50 {fmt_ms(su['first_call_cold']['p50'])} ms")
        plan: list[tuple[str, int, int, str]] = [("floor", 1, calls_for(args, "floor", size),
                                                  "single session (floor)")]
        plan += [("forward", n, calls_for(args, "forward", size), f"forward N={n}") for n in args.sessions]
        plan += [("handoff", n, calls_for(args, "handoff", size), f"handoff N={n}") for n in args.sessions]
        plan += [("naive", n, calls_for(args, "naive", size), f"naive N={n}") for n in args.naive_sessions]
        for k, (mode, n, calls, label) in enumerate(plan):
            t0 = time.perf_counter()
            sc = await run_load(size, "forward" if mode == "floor" else mode, n, calls, home, workdir,
                                seed=size * 100 + k, label=label)
            sc["mode"] = mode
            results["scenarios"].append(sc)
            a = sc["summary"]["all"]
            say(f"    {label:<24} store p50 {fmt_ms(a['store']['p50']):>6} ms  retrieve p50 "
                f"{fmt_ms(a['retrieve']['p50']):>6} ms  errors {a['errors']}  "
                f"({time.perf_counter() - t0:.1f} s)")
        if args.failovers > 0 and (size in args.failover_sizes or not args.failover_sizes):
            t0 = time.perf_counter()
            fo = await run_failover(size, args.failovers, 4, home, workdir, seed=size * 100 + 99)
            results["failover"].append(fo)
            fs = fo["recovery"]
            say(f"    failover x{len(fo['reps'])}: recovery p50 {fmt_ms(fs['p50'])} ms, "
                f"max {fmt_ms(fs['max'])} ms, errors {fo['error_count']} "
                f"({time.perf_counter() - t0:.1f} s)")
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about a minute: 1k only, N=2,4, fewer calls")
    p.add_argument("--out", default=str(REPO / "docs" / "bench"), help="output folder (default docs/bench)")
    p.add_argument("--sizes", type=int, nargs="+", help="store sizes (default 1000 10000; quick 1000)")
    p.add_argument("--sessions", type=int, nargs="+", help="N for forward/handoff (default 2 4 8)")
    p.add_argument("--naive-sessions", type=int, nargs="+", help="N for naive (default 2 4 8; quick 2)")
    p.add_argument("--calls", type=int, help="store+retrieve pairs per session, floor and forward "
                                             "(default 25; quick 8)")
    p.add_argument("--calls-handoff", type=int, help="pairs per session in handoff mode (default 6 at 1k, "
                                                     "3 at 10k; quick 3)")
    p.add_argument("--calls-naive", type=int, help="pairs per session in naive mode (default 5 at 1k, "
                                                   "2 at 10k; quick 3)")
    p.add_argument("--failovers", type=int, help="owner kills per size (default 5; quick 2)")
    p.add_argument("--failover-sizes", type=int, nargs="*", default=[],
                   help="sizes with failover (default all)")
    p.add_argument("--workdir", help="scratch folder (default: a new temp folder, removed at the end)")
    p.add_argument("--preload-cache", help="keep preloaded stores here and reuse them on the next run "
                                           "(the import time reported is then the first run's)")
    p.add_argument("--from-json", help="only re-render results.md/.png and the tables from this results.json")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs)")
    args = p.parse_args(argv)
    q = args.quick
    args.sizes = args.sizes or ([1000] if q else [1000, 10000])
    args.sessions = args.sessions or ([2, 4] if q else [2, 4, 8])
    args.naive_sessions = args.naive_sessions or ([2] if q else [2, 4, 8])
    args.failovers = args.failovers if args.failovers is not None else (2 if q else 5)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        results["rows"] = table_rows(results)
        write_outputs(results, out)
        return 0
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clarity-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    WORKDIR["path"] = str(workdir)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": {"quick": q, "sizes": args.sizes, "sessions": args.sessions,
                   "naive_sessions": args.naive_sessions,
                   "pairs_per_session": {str(size): {m: calls_for(args, m, size) for m in
                                                     ("floor", "forward", "handoff", "naive")}
                                         for size in args.sizes},
                   "failovers": args.failovers, "embedding": "all-MiniLM-L6-v2 int8 (default)",
                   "call": "each session: N pairs of store_memory then retrieve_memory(limit 5), "
                           "in sequence"},
        "preload": {}, "scenarios": [], "failover": [],
    }
    t0 = time.perf_counter()
    print(f"Clarity benchmark ({'quick' if q else 'full'}): scratch {workdir}", flush=True)
    try:
        anyio.run(bench, args, workdir, results)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        leftovers = kill_leftovers()
        if leftovers:
            print(f"killed leftover server processes: {leftovers}", file=sys.stderr)
        results["leftover_processes_killed"] = leftovers
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["machine"]["loadavg_end"] = _read("/proc/loadavg").split()[:3]
    results["rows"] = table_rows(results)
    write_outputs(results, out)
    return 0


def write_outputs(results: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "results.md")
    write_chart(results, out / "results.png")
    print_tables(results)
    print(f"wall time {results['wall_s']:.1f} s; wrote {out / 'results.json'}, {out / 'results.md'}, "
          f"{out / 'results.png'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
