#!/usr/bin/env python3
"""Stress test: many real `clarity serve` sessions write to one store while the owner is killed/frozen.

    python scripts/stress.py --writers 8 --writes 200 [--readers R] [--mode forward|handoff]
        [--kill-owner-every S | --stop-owner-every S [--stop-for S]] [--deadline-s S]
        [--home DIR] [--keep] [--json FILE] [--timeout-s S]

Each writer is a separate process (multiprocessing, "spawn") that drives its own `clarity serve` over
MCP (`clarity.session_client.SessionClient`) and stores `--writes` distinct notes. Every acknowledged
write, every error (with its kind) and the latency of every call go to a per-writer JSONL file, flushed
line by line, so the acknowledgements of a killed process survive. When a session's server dies, the
writer starts a new session and re-sends the same content (the store deduplicates identical content, so
a write the dead owner already made comes back as `duplicate_of`, which counts as acknowledged).

Chaos (run by this parent process):
- `--kill-owner-every S`: every S seconds, SIGKILL the lease owner named by `clarity status --json`
  (only when that pid is a server of this run, and once the previous failover has completed, so every
  kill has a measurable failover time: kill -> next successful call of any session).
- `--stop-owner-every S`: SIGSTOP the owner for `--stop-for` seconds (default S/2), then SIGCONT it.
  Calls ending with "unresponsive" during a freeze (up to one call deadline after it) are expected.

At the end a fresh session pages through `list_memories` (tag "stress") and checks that every
acknowledged id is stored (`lost`) and that no content is stored twice (`duplicates`). Exit status 1
when anything was lost or duplicated, a writer crashed or gave up, or the run timed out; else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

WORDS = ("cache", "lease", "owner", "socket", "vector", "qdrant", "embedding", "retry", "deadline", "epoch",
         "handoff", "forward", "session", "memory", "decision", "refactor", "index", "schema", "token",
         "latency", "timeout", "backoff", "heartbeat", "waiter", "ticket", "payload", "cosine", "batch",
         "model", "config", "project", "agent", "prompt", "review", "deploy", "branch", "migration")

CONN_KINDS = ("killed_session", "connection_lost")
SESSION_PREFIX = "stress"


# ---- small helpers ---------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return round(s[k], 2)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


class Jsonl:
    """Append-only JSONL log, flushed after every line (a killed process keeps what it wrote)."""

    def __init__(self, path: Path) -> None:
        self.f = path.open("a", encoding="utf-8")

    def write(self, **rec: Any) -> None:
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def proc_environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def session_of(pid: int) -> str | None:
    """CLARITY_SESSION_ID of a live process (None when unreadable)."""
    for item in proc_environ(pid).split(b"\0"):
        if item.startswith(b"CLARITY_SESSION_ID="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return None


def marked_pids(marker: str) -> list[int]:
    """Live processes whose CLARITY_SESSION_ID starts with `marker` (the servers of this run)."""
    want = f"CLARITY_SESSION_ID={marker}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        env = proc_environ(int(d.name))
        if any(item.startswith(want) for item in env.split(b"\0")):
            pids.append(int(d.name))
    return pids


def proc_state(pid: int) -> str | None:
    """The /proc state letter (R, S, T, Z, ...) or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def classify_tool_error(message: str) -> str:
    msg = message.lower()
    if "unresponsive" in msg:
        return "owner_unresponsive"
    if "no owner could serve" in msg or "deadline passed" in msg:
        return "coordination_timeout"
    if "shutting down" in msg:
        return "shutting_down"
    return "tool_error"


def served_after(t0: float, t1: float, t: float) -> bool:
    """A successful call [t0, t1] was served after time t: it started after t, or ended well after t
    (a reply the old owner sent just before a kill reaches the client within a few ms)."""
    return t1 > t and (t0 >= t or t1 >= t + 0.05)


# ---- worker processes (writers and readers) ----------------------------------------------------------

class Worker:
    """One writer or reader: owns a SessionClient, restarts it when its server dies."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name = f"{cfg['role'][0]}{cfg['index']}"
        self.work = Path(cfg["work"])
        self.log = Jsonl(self.work / f"{self.name}.jsonl")
        self.errlog = (self.work / f"{self.name}.server.log").open("a", encoding="utf-8")
        self.client: Any = None
        self.session_id: str | None = None
        self.session_no = 0
        self.rng = random.Random(cfg["seed"])

    # ---- bounds
    def expired(self) -> bool:
        return (time.time() >= self.cfg["deadline_at"] or os.getppid() != self.cfg["parent_pid"]
                or (self.work / "stop-all").exists())

    # ---- sessions
    async def open_session(self) -> bool:
        from clarity.session_client import SessionClient

        if self.session_no >= self.cfg["max_sessions"]:
            return False
        self.session_no += 1
        sid = f"{SESSION_PREFIX}-{self.cfg['run_id']}-{self.name}-{self.session_no}"
        env = dict(self.cfg["env"], CLARITY_SESSION_ID=sid)
        client = SessionClient(self.cfg["home"], env=env, errlog=self.errlog,
                               read_timeout_s=self.cfg["read_timeout_s"])
        t0, p0 = time.time(), time.perf_counter()
        try:
            await client.__aenter__()
        except Exception as e:  # noqa: BLE001 - recorded, then retried by the caller
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            self.log.write(ev="error", op="session_start", kind="session_start",
                           msg=f"{type(e).__name__}: {e}"[:300], t0=t0, t1=time.time(),
                           ms=round((time.perf_counter() - p0) * 1000, 2), session=sid)
            return True
        self.client, self.session_id = client, sid
        self.log.write(ev="session", session=sid, t=time.time(),
                       ms=round((time.perf_counter() - p0) * 1000, 2))
        return True

    async def close_session(self) -> None:
        client, self.client, self.session_id = self.client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    def killed_sessions(self) -> set[str]:
        return {str(k.get("session")) for k in read_jsonl(self.work / "kills.jsonl")}

    async def call(self, tool: str, args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One call; returns (result or None, log record). Restarts the session when it died."""
        from clarity.session_client import ToolCallError

        t0, p0 = time.time(), time.perf_counter()
        sid = self.session_id
        try:
            res = await self.client.call(tool, args)
        except ToolCallError as e:
            rec = {"ev": "error", "kind": classify_tool_error(e.message), "msg": e.message[:1000]}
            res = None
        except Exception as e:  # noqa: BLE001 - the connection or the client failed
            text = f"{type(e).__name__}: {e}"
            if sid in self.killed_sessions():
                kind = "killed_session"
            elif "timed out" in text.lower() or isinstance(e, TimeoutError):
                kind = "client_timeout"
            else:
                kind = "connection_lost"
            rec = {"ev": "error", "kind": kind, "msg": text[:1000]}
            res = None
            await self.close_session()
        else:
            rec = {"ev": "ok"}
        rec.update(op=tool, t0=t0, t1=time.time(), ms=round((time.perf_counter() - p0) * 1000, 2),
                   session=sid)
        return res, rec

    async def backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(0.5, 0.02 * (2 ** min(attempt, 5))) * (0.5 + self.rng.random()))

    # ---- writer
    async def run_writer(self) -> int:
        idx, writes = self.cfg["index"], self.cfg["writes"]
        acked = gave_up = 0
        crashed = None
        try:
            for seq in range(writes):
                words = " ".join(self.rng.choice(WORDS) for _ in range(6))
                content = (f"stress writer {idx} item {seq} token {uuid.uuid4().hex[:12]}: "
                           f"note about {words}")
                args = {"content": content, "memory_type": "note", "tags": ["stress", f"w{idx}"]}
                attempt = 0
                while True:
                    if self.expired() or attempt >= self.cfg["max_attempts"]:
                        gave_up = writes - seq
                        break
                    if self.client is None:
                        if not await self.open_session():
                            gave_up = writes - seq
                            break
                        if self.client is None:
                            attempt += 1
                            await self.backoff(attempt)
                            continue
                    res, rec = await self.call("store_memory", args)
                    if res is not None:
                        mid = res.get("id")
                        self.log.write(ev="ack", seq=seq, id=mid, content=content, stored=res.get("stored"),
                                       dup=res.get("duplicate_of") is not None, attempt=attempt,
                                       **{k: rec[k] for k in ("op", "t0", "t1", "ms", "session")})
                        acked += 1
                        break
                    self.log.write(seq=seq, attempt=attempt, **rec)
                    attempt += 1
                    if rec["kind"] not in CONN_KINDS:
                        await self.backoff(attempt)
                if gave_up:
                    break
        except Exception as e:  # noqa: BLE001 - report and exit non-zero
            crashed = f"{type(e).__name__}: {e}"
        finally:
            await self.close_session()
            self.log.write(ev="done", t=time.time(), acked=acked, gave_up=gave_up, crashed=crashed,
                           sessions=self.session_no)
            self.log.close()
            self.errlog.close()
        return 2 if crashed else (3 if gave_up else 0)

    # ---- reader
    async def run_reader(self) -> int:
        stop = self.work / "stop-readers"
        calls = 0
        crashed = None
        try:
            while not stop.exists() and not self.expired() and calls < self.cfg["max_reads"]:
                if self.client is None:
                    if not await self.open_session():
                        break
                    if self.client is None:
                        await self.backoff(3)
                        continue
                words = " ".join(self.rng.choice(WORDS) for _ in range(6))
                query = (f"stress writer {self.rng.randrange(self.cfg['writers'])} item "
                         f"{self.rng.randrange(self.cfg['writes'])} note about {words}")
                res, rec = await self.call("retrieve_memory", {"query": query, "limit": 5})
                calls += 1
                if res is not None:
                    rec["count"] = res.get("count")
                self.log.write(**rec)
                if res is None and rec["kind"] not in CONN_KINDS:
                    await self.backoff(2)
        except Exception as e:  # noqa: BLE001
            crashed = f"{type(e).__name__}: {e}"
        finally:
            await self.close_session()
            self.log.write(ev="done", t=time.time(), calls=calls, crashed=crashed, sessions=self.session_no)
            self.log.close()
            self.errlog.close()
        return 2 if crashed else 0


def worker_entry(cfg: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    w = Worker(cfg)
    coro = w.run_writer() if cfg["role"] == "writer" else w.run_reader()
    sys.exit(asyncio.run(coro))


# ---- the parent: progress, chaos, verification, report ------------------------------------------------

class Tail:
    """Reads the new complete lines of a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.buf = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


class Run:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.run_id = uuid.uuid4().hex[:8]
        self.marker = f"{SESSION_PREFIX}-{self.run_id}-"
        self.own_home = a.home is None
        self.home = Path(a.home or tempfile.mkdtemp(prefix="clarity-stress-home-")).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="clarity-stress-work-"))
        self.env = {"CLARITY_COORDINATION_MODE": a.mode}
        if a.deadline_s is not None:
            self.env["CLARITY_CALL_DEADLINE_S"] = str(a.deadline_s)
        self.call_deadline = a.deadline_s if a.deadline_s is not None else 30.0
        self.procs: dict[str, mp.process.BaseProcess] = {}
        self.tails: dict[str, Tail] = {}
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.kills: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.chaos_skipped: Counter[str] = Counter()
        self.frozen: dict[str, Any] | None = None
        self.kill_log = Jsonl(self.work / "kills.jsonl")
        self.chaos_t = 0.0  # time of the last kill or SIGCONT (0: the run's start)
        self.recovered = False  # a call succeeded since then (see `served_after`)
        self.acked = 0
        self.errors_live = 0
        self.t_start = self.t_writers_end = 0.0
        self.timed_out = False
        self.interrupted = False

    # ---- processes
    def start_workers(self) -> None:
        ctx = mp.get_context("spawn")
        a = self.a
        now = time.time()
        base = {"home": str(self.home), "work": str(self.work), "env": self.env, "run_id": self.run_id,
                "writes": a.writes, "writers": a.writers, "deadline_at": now + a.timeout_s,
                "parent_pid": os.getpid(), "read_timeout_s": self.call_deadline + 30.0,
                "max_attempts": 200, "max_sessions": 500, "max_reads": 1_000_000}
        for role, n in (("writer", a.writers), ("reader", a.readers)):
            for i in range(n):
                cfg = dict(base, role=role, index=i, seed=random.randrange(1 << 30))
                name = f"{role[0]}{i}"
                p = ctx.Process(target=worker_entry, args=(cfg,), name=f"stress-{name}", daemon=False)
                p.start()
                self.procs[name] = p
                self.tails[name] = Tail(self.work / f"{name}.jsonl")
                self.records[name] = []

    def poll_logs(self) -> None:
        for name, tail in self.tails.items():
            for rec in tail.read():
                self.records[name].append(rec)
                ev = rec.get("ev")
                if ev in ("ack", "ok"):
                    if served_after(rec.get("t0", 0.0), rec.get("t1", 0.0), self.chaos_t):
                        self.recovered = True
                    if ev == "ack":
                        self.acked += 1
                elif ev == "error" and rec.get("kind") != "killed_session":
                    self.errors_live += 1

    def writers_alive(self) -> bool:
        return any(p.is_alive() for n, p in self.procs.items() if n.startswith("w"))

    # ---- chaos
    def owner(self) -> dict[str, Any] | None:
        cmd = [sys.executable, "-m", "clarity", "status", "--json", "--home", str(self.home)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=False)
            owner = json.loads(out.stdout).get("owner")
        except (subprocess.TimeoutExpired, ValueError, AttributeError):
            self.chaos_skipped["status_failed"] += 1
            return None
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None

    def _target(self) -> tuple[dict[str, Any], str] | None:
        owner = self.owner()
        if owner is None:
            self.chaos_skipped["no_owner"] += 1
            return None
        sid = session_of(owner["pid"])
        if sid is None or not sid.startswith(self.marker):
            self.chaos_skipped["owner_not_ours"] += 1  # never signal a process this run did not start
            return None
        return owner, sid

    def kill_owner(self) -> bool:
        found = self._target()
        if found is None:
            return False
        owner, sid = found
        t = time.time()
        rec = {"t": t, "pid": owner["pid"], "epoch": owner.get("epoch"), "state": owner.get("state"),
               "session": sid, "victim": sid.rsplit("-", 2)[-2]}
        self.kill_log.write(**rec)  # before the kill: the victim's writer must see it when its call fails
        try:
            os.kill(owner["pid"], signal.SIGKILL)
        except ProcessLookupError:
            self.chaos_skipped["owner_exited"] += 1
            return False
        self.kills.append(rec)
        return True

    def stop_owner(self) -> bool:
        found = self._target()
        if found is None:
            return False
        owner, sid = found
        try:
            os.kill(owner["pid"], signal.SIGSTOP)
        except ProcessLookupError:
            self.chaos_skipped["owner_exited"] += 1
            return False
        self.frozen = {"t_stop": time.time(), "pid": owner["pid"], "epoch": owner.get("epoch"),
                       "session": sid, "victim": sid.rsplit("-", 2)[-2]}
        return True

    def thaw(self) -> None:
        if self.frozen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.frozen["pid"], signal.SIGCONT)
            self.frozen["t_cont"] = self.chaos_t = time.time()
            self.recovered = False
            self.stops.append(self.frozen)
            self.frozen = None

    # ---- main loop
    def monitor(self, progress: Any) -> None:
        a = self.a
        hard_end = self.t_start + a.timeout_s + 30.0
        every = a.kill_owner_every or a.stop_owner_every
        stop_for = a.stop_for if a.stop_for is not None else (a.stop_owner_every or 0) / 2
        next_chaos = self.t_start + every if every else math.inf
        while self.writers_alive():
            now = time.time()
            if now > hard_end:
                self.timed_out = True
                break
            self.poll_logs()
            if self.frozen is not None and now - self.frozen["t_stop"] >= stop_for:
                self.thaw()
            elif self.frozen is None and now >= next_chaos:
                # act only once there is an owner that served something since the previous action
                if self.recovered:
                    done = self.kill_owner() if a.kill_owner_every else self.stop_owner()
                    if done:
                        next_chaos = time.time() + every
                        if a.kill_owner_every:
                            self.chaos_t, self.recovered = self.kills[-1]["t"], False
                    else:
                        next_chaos = now + 0.25
                else:
                    self.chaos_skipped["waiting_for_recovery"] += 1
                    next_chaos = now + 0.1
            progress(self)
            time.sleep(0.1)
        self.thaw()
        self.t_writers_end = time.time()

    def stop_workers(self) -> None:
        """Readers stop now; writers finish (or, after a timeout or ^C, stop at their next call)."""
        (self.work / "stop-readers").touch()
        if self.timed_out or self.interrupted:
            (self.work / "stop-all").touch()
        end = time.time() + (10.0 if self.timed_out or self.interrupted else self.call_deadline + 35.0)
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

    def reap_servers(self) -> list[int]:
        """Kill every server of this run still alive (orphans of killed or crashed workers)."""
        killed = []
        for _round in range(3):
            pids = marked_pids(self.marker)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.3)
        return killed

    # ---- verification
    async def _list_all(self) -> list[dict[str, Any]]:
        from clarity.session_client import SessionClient

        env = dict(self.env, CLARITY_SESSION_ID=f"{self.marker}verify")
        found: list[dict[str, Any]] = []
        with (self.work / "verify.server.log").open("a", encoding="utf-8") as errlog:
            client = SessionClient(self.home, env=env, errlog=errlog,
                                   read_timeout_s=self.call_deadline + 60.0)
            async with client as s:
                for _page in range(10_000):  # bounded paging
                    res = await s.call("list_memories", {"tags": ["stress"], "limit": 1000,
                                                         "offset": len(found), "include_content": True})
                    found += res["memories"]
                    if not res["memories"] or len(found) >= res["total"]:
                        break
        return found

    def verify(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        err = None
        for attempt in range(3):
            try:
                return asyncio.run(self._list_all()), None
            except Exception as e:  # noqa: BLE001 - retried, then reported
                err = f"{type(e).__name__}: {e}"
                time.sleep(1 + attempt)
        return None, err

    # ---- report
    def report(self, stored: list[dict[str, Any]] | None, verify_error: str | None,
               reaped: list[int]) -> dict[str, Any]:
        a = self.a
        acks: dict[str, dict[str, Any]] = {}
        store_ms, retrieve_ms, successes = [], [], []
        errors: Counter[str] = Counter()
        expected: Counter[str] = Counter()
        unexpected: Counter[str] = Counter()
        error_samples: dict[str, str] = {}
        crashed, gave_up, sessions = [], 0, 0
        for name, recs in self.records.items():
            done = [r for r in recs if r.get("ev") == "done"]
            p = self.procs[name]
            if not done or done[-1].get("crashed") or (p.exitcode not in (0, 3)):
                crashed.append({"worker": name, "exitcode": p.exitcode,
                                "why": (done[-1].get("crashed") if done else "no done record")})
            if done:
                gave_up += int(done[-1].get("gave_up") or 0)
                sessions += int(done[-1].get("sessions") or 0)
            for r in recs:
                ev = r.get("ev")
                if ev == "ack":
                    acks[r["content"]] = r
                    store_ms.append(r["ms"])
                    successes.append((r["t0"], r["t1"]))
                elif ev == "ok":
                    retrieve_ms.append(r["ms"])
                    successes.append((r["t0"], r["t1"]))
                elif ev == "error":
                    kind = r.get("kind", "unknown")
                    if kind == "killed_session":
                        expected[kind] += 1
                        continue
                    errors[kind] += 1
                    error_samples.setdefault(kind, r.get("msg", ""))
                    grace = self.call_deadline + 1
                    in_freeze = any(s["t_stop"] <= r["t1"] <= s.get("t_cont", math.inf) + grace
                                    for s in self.stops)
                    if kind == "owner_unresponsive" and in_freeze:
                        expected[kind] += 1
                    else:
                        unexpected[kind] += 1
        failover = []
        for k in self.kills:
            t = k["t"]
            after = [t1 - t for t0, t1 in successes if served_after(t0, t1, t)]
            k["failover_ms"] = round(min(after) * 1000, 1) if after else None
            if after:
                failover.append(min(after) * 1000)
        for s in self.stops:
            after = [t1 - s["t_cont"] for _t0, t1 in successes if t1 >= s["t_cont"]]
            s["freeze_ms"] = round((s["t_cont"] - s["t_stop"]) * 1000, 1)
            s["first_success_after_cont_ms"] = round(min(after) * 1000, 1) if after else None
        lost = duplicates = missing_unacked = mismatched = None
        stored_total = None
        lost_ids: list[str] = []
        if stored is not None:
            by_id = {m["id"]: m for m in stored}
            lost_ids = [r["id"] for r in acks.values() if r["id"] not in by_id]
            lost = len(lost_ids)
            mismatched = sum(1 for c, r in acks.items()
                             if r["id"] in by_id and by_id[r["id"]].get("content") != c)
            counts = Counter(m.get("content") for m in stored)
            duplicates = sum(n for n in counts.values() if n > 1)
            missing_unacked = sum(1 for c in counts if c not in acks)
            stored_total = len(stored)
        duration = max(1e-9, (self.t_writers_end or time.time()) - self.t_start)
        return {
            "mode": a.mode, "writers": a.writers, "writes": a.writes, "readers": a.readers,
            "writes_total": a.writers * a.writes, "acked": len(acks), "gave_up": gave_up,
            "stored": stored_total, "lost": lost, "lost_ids": lost_ids[:20], "duplicates": duplicates,
            "content_mismatch": mismatched, "stored_not_acked": missing_unacked,
            "dedup_acks": sum(1 for r in acks.values() if r.get("dup")),
            "errors": dict(errors), "expected_errors": dict(expected), "unexpected_errors": dict(unexpected),
            "error_samples": error_samples,
            "killed_session_errors": expected.get("killed_session", 0),
            "owner_kills": len(self.kills), "owner_stops": len(self.stops),
            "chaos_skipped": dict(self.chaos_skipped),
            "store_ms": {"p50": pct(store_ms, 50), "p99": pct(store_ms, 99), "max": pct(store_ms, 100),
                         "n": len(store_ms)},
            "retrieve_ms": {"p50": pct(retrieve_ms, 50), "p99": pct(retrieve_ms, 99),
                            "max": pct(retrieve_ms, 100), "n": len(retrieve_ms)},
            "throughput_per_s": round(len(acks) / duration, 2), "duration_s": round(duration, 2),
            "failover_ms": {"p50": pct(failover, 50), "max": pct(failover, 100), "n": len(failover)},
            "kills": self.kills, "stops": self.stops, "sessions_started": sessions,
            "crashed_workers": crashed, "timed_out": self.timed_out, "interrupted": self.interrupted,
            "verify_error": verify_error,
            "orphans_killed": len(reaped), "call_deadline_s": self.call_deadline,
            "home": str(self.home) if a.keep or not self.own_home else None,
            "work_dir": str(self.work) if a.keep else None,
        }


def print_summary(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(d: dict[str, Any] | None) -> str:
        return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "none"

    t = Table(title=f"clarity stress: {res['writers']} writers x {res['writes']} writes, mode {res['mode']}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("acked / total", f"{res['acked']} / {res['writes_total']}" + (f" (gave up {res['gave_up']})"
                                                                         if res["gave_up"] else "")),
        ("stored (tag stress)", str(res["stored"])),
        ("lost", f"[{'green' if res['lost'] == 0 else 'red'}]{res['lost']}[/]"),
        ("duplicates", f"[{'green' if res['duplicates'] == 0 else 'red'}]{res['duplicates']}[/]"),
        ("acked as duplicate_of", str(res["dedup_acks"])),
        ("errors (not killed_session)", fmt(res["errors"])),
        ("  of which unexpected", fmt(res["unexpected_errors"])),
        ("killed_session errors", str(res["killed_session_errors"])),
        ("owner kills / stops", f"{res['owner_kills']} / {res['owner_stops']}"),
        ("failover ms p50 / max", f"{res['failover_ms']['p50']} / {res['failover_ms']['max']}"),
        ("store ms p50 / p99 / max",
         f"{res['store_ms']['p50']} / {res['store_ms']['p99']} / {res['store_ms']['max']}"),
        ("retrieve ms p50 / p99", f"{res['retrieve_ms']['p50']} / {res['retrieve_ms']['p99']}"
                                  f" (n {res['retrieve_ms']['n']})"),
        ("throughput (acked/s)", str(res["throughput_per_s"])),
        ("duration s", str(res["duration_s"])),
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
    Console().print(t)
    if not failed(res):
        Console().print("[green]OK[/]: everything acknowledged is stored, once")
    else:
        why = [w for w, bad in (("lost", res["lost"] != 0), ("duplicates", res["duplicates"] != 0),
                                ("crashed workers", res["crashed_workers"]), ("timed out", res["timed_out"]),
                                ("writes given up", res["gave_up"]), ("verification", res["verify_error"]),
                                ("interrupted", res["interrupted"])) if bad]
        Console().print(f"[red]FAILED[/]: {', '.join(why)}")


def failed(res: dict[str, Any]) -> bool:
    return bool(res["lost"] != 0 or res["duplicates"] != 0 or res["crashed_workers"] or res["timed_out"]
                or res["gave_up"] or res["verify_error"] or res["interrupted"])


def make_progress(run: Run) -> tuple[Any, Any]:
    """(context manager, callback): a rich progress bar on a TTY, plain lines on stderr otherwise."""
    total = run.a.writers * run.a.writes

    def extra(r: Run) -> str:
        state = " FROZEN" if r.frozen else ""
        return f"errors {r.errors_live}  kills {len(r.kills)}  stops {len(r.stops)}{state}"

    if sys.stdout.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        prog = Progress(TextColumn("[bold]acked"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[extra]}"), refresh_per_second=5)
        task = prog.add_task("acked", total=total, extra="")

        def cb(r: Run) -> None:
            prog.update(task, completed=r.acked, extra=extra(r))

        return prog, cb

    last = [0.0]

    def plain(r: Run) -> None:
        now = time.time()
        if now - last[0] >= 2.0:
            last[0] = now
            sys.stderr.write(f"[stress {now - r.t_start:6.1f}s] acked {r.acked}/{total}  {extra(r)}\n")
            sys.stderr.flush()

    return contextlib.nullcontext(), plain


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
        ctx, cb = make_progress(run)
        run.t_start = time.time()
        run.start_workers()
        try:
            with ctx:
                run.monitor(cb)
        except KeyboardInterrupt:
            run.interrupted = True
            sys.stderr.write("interrupted: stopping the workers, then verifying what was acknowledged\n")
        finally:
            run.thaw()
            run.stop_workers()
        reaped = run.reap_servers()
        stored, verify_error = run.verify()
        reaped += run.reap_servers()
        res = run.report(stored, verify_error, reaped)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
    finally:
        run.thaw()
        for proc in run.procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        run.reap_servers()
        run.kill_log.close()
        if not a.keep:
            shutil.rmtree(run.work, ignore_errors=True)
            if run.own_home:
                shutil.rmtree(run.home, ignore_errors=True)
        else:
            sys.stderr.write(f"kept home {run.home} and logs {run.work}\n")
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
