"""Benchmark scenarios, through MCP, with real `clarity serve` sessions (scripts/bench.py runs them).

Each scenario works on its own copy of a prebuilt store and returns plain JSON figures (ms, MiB).
- `owner_scenario`: one session: its first call (a new owner: engine open + model load); while the store
  builds its index in the background (a migrated one), retrieves every 0.15 s and the build's duration; then
  store and retrieve pairs, list_memories (limit 20), memory_stats; owner RSS; then a second session's calls
  (forwarded to the owner) and that non-owner's RSS.
- `failover_scenario`: N sessions, the non-owners calling in a loop; the owner is SIGKILLed; recovery is
  the time from the kill to the end of the first successful call another session started after it.
- `throughput_scenario`: N sessions storing concurrently; aggregate stores per second, and the CPU
  milliseconds per store spent by the owner, the other sessions' servers and this (client) process.
- `peer_scenario`: one Clarity session and one mcp-server-qdrant session, fresh empty stores, the same
  Python MCP client, calls interleaved (Clarity store, peer store, Clarity retrieve, peer find).
Per-stage timing (issue 9 §3): `stage_timings` reads a `timings` section from coordination_status when the
server reports one; rows carry it under "stages" (None until the server measures its hops).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio

from tests.harness.corpus import Corpus
from tests.harness.peer import peer_model_cache, peer_session
from tests.harness.processes import owner_pid, rss_kib, signal_pid
from tests.harness.sessions import Session, SessionGroup
from tests.harness.stats import percentile, summarize

BUILD_RETRIEVE_PAUSE_S = 0.15  # between the retrieves timed while the index builds


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


async def timed(s: Any, tool: str, args: dict[str, Any], out: list[float], errors: list[str]) -> bool:
    """One call; its latency in ms goes to `out`, or its error to `errors`."""
    t0 = time.perf_counter()
    try:
        await s.call(tool, args)
    except Exception as e:
        errors.append(f"{tool}: {type(e).__name__}: {str(e)[:200]}")
        return False
    out.append((time.perf_counter() - t0) * 1000)
    return True


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a live process has used so far; 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def stage_timings(status: dict[str, Any]) -> dict[str, Any] | None:
    """Per-hop timings the server reports in coordination_status["timings"] (None when it reports none)."""
    t = status.get("timings")
    return t if isinstance(t, dict) else None


def store_args(corpus: Corpus) -> dict[str, Any]:
    return {"content": corpus.sentence(), "memory_type": "note", "tags": ["bench"]}


async def owner_scenario(home: Path, env: dict[str, str], logdir: Path, marker: str, pairs: int, reads: int,
                         seed: int) -> dict[str, Any]:
    corpus = Corpus(seed)
    st_ms: list[float] = []
    rt_ms: list[float] = []
    ls_ms: list[float] = []
    ss_ms: list[float] = []
    fw_ms: list[float] = []
    bt_ms: list[float] = []  # retrieves while the index builds
    errors: list[str] = []
    out: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        group = SessionGroup(tg, home, env, logdir, marker)
        try:
            (s,) = await group.start(1)
            t0 = time.perf_counter()
            await s.call("retrieve_memory", {"query": corpus.query(), "limit": 5})
            out["first_call_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            # a store opened unindexed past the threshold (a migrated one) builds its index in the background:
            # time retrieves while it builds (a pause between them, so the benchmark does not starve the
            # build), poll memory_stats about once a second, and say how long the build took (None: no build
            # ran); the rows below measure the state it is in afterwards
            t1, end = time.perf_counter(), time.monotonic() + 1200
            building = bool((await s.call("memory_stats")).get("index_building"))
            out["index_wait_s"] = None
            next_poll = time.monotonic() + 1.0
            while building and time.monotonic() < end:
                await anyio.sleep(BUILD_RETRIEVE_PAUSE_S)
                await timed(s, "retrieve_memory", {"query": corpus.query(), "limit": 5}, bt_ms, errors)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + 1.0
                    building = bool((await s.call("memory_stats")).get("index_building"))
                    out["index_wait_s"] = round(time.perf_counter() - t1, 1)
            # the owner's stages over (mostly) the build's calls, before the rows below refill its windows
            out["stages_during_build"] = stage_timings(await s.status()) if out["index_wait_s"] is not None else None
            for _ in range(pairs):
                await timed(s, "store_memory", store_args(corpus), st_ms, errors)
                await timed(s, "retrieve_memory", {"query": corpus.query(), "limit": 5}, rt_ms, errors)
            for _ in range(reads):
                await timed(s, "list_memories", {"limit": 20}, ls_ms, errors)
                await timed(s, "memory_stats", {}, ss_ms, errors)
            status = await s.status()
            out["engine_name"] = (await s.call("memory_stats")).get("engine") if not errors else None
            out["owner_rss_mib"] = mib(rss_kib(s.pid or 0))
            out["stages"] = stage_timings(status)
            # two more sessions: one becomes the hot standby (model loaded), the other stays a plain peer
            peers = await group.start(2)
            roles: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                roles = {(await p.status())["this_process"]["role"]: p for p in peers}
                if "standby" in roles and "peer" in roles:
                    break
                await anyio.sleep(0.2)
            peer = roles.get("peer", peers[0])
            for _ in range(max(3, pairs // 3)):
                await timed(peer, "retrieve_memory", {"query": corpus.query(), "limit": 5}, fw_ms, errors)
            pst = await peer.status()
            out["non_owner_rss_mib"] = mib(rss_kib(peer.pid or 0))
            out["non_owner_model_loaded"] = pst["this_process"]["model_loaded"]
            out["non_owner_stages"] = stage_timings(pst)
            if "standby" in roles:
                out["standby_rss_mib"] = mib(rss_kib(roles["standby"].pid or 0))
        finally:
            await group.stop()
    out.update(store=summarize(st_ms), retrieve=summarize(rt_ms), list=summarize(ls_ms), stats=summarize(ss_ms),
               non_owner_retrieve=summarize(fw_ms), errors=errors[:20], error_count=len(errors))
    p90 = percentile(bt_ms, 90)
    out["retrieve_during_build"] = ({**summarize(bt_ms), "p90": round(p90, 3) if p90 is not None else None}
                                    if out.get("index_wait_s") is not None else None)
    return out


async def _warm(sessions: list[Session], corpus: Corpus) -> None:
    """The first session calls first (it becomes the owner), then the others."""
    with anyio.fail_after(600):
        await sessions[0].call("retrieve_memory", {"query": corpus.query()})
        async with anyio.create_task_group() as tg:
            for s in sessions[1:]:
                tg.start_soon(s.call, "retrieve_memory", {"query": corpus.query()})


class _KillLoop:
    """Sessions calling in a loop (store, retrieve, ...) until `stop`; `seen` once a call that started
    after `t_kill` succeeded."""

    def __init__(self, corpus: Corpus, errors: list[str]) -> None:
        self.corpus, self.errors = corpus, errors
        self.log: list[tuple[float, float, bool]] = []
        self.t_kill = float("inf")
        self.seen, self.stop = anyio.Event(), anyio.Event()

    async def loop(self, s: Session) -> None:
        for i in range(100_000):
            if self.stop.is_set():
                return
            t0 = time.perf_counter()
            tool, args = (("store_memory", store_args(self.corpus)) if i % 2 == 0
                          else ("retrieve_memory", {"query": self.corpus.query()}))
            ok = await timed(s, tool, args, [], self.errors)
            self.log.append((t0, time.perf_counter(), ok))
            if ok and t0 >= self.t_kill:
                self.seen.set()


async def wait_standby(sessions: list[Session], timeout_s: float = 60.0) -> bool:
    """Wait (at most `timeout_s`) until one of `sessions` is the ready hot standby (its model loaded,
    waiting on the lease lock), so a kill measures a failover to it; False when none became one."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for s in sessions:
            if (await s.call("coordination_status"))["this_process"]["role"] == "standby":
                return True
        await anyio.sleep(0.1)
    return False


async def failover_scenario(home: Path, env: dict[str, str], logdir: Path, marker: str, reps: int, n: int,
                            seed: int) -> dict[str, Any]:
    corpus = Corpus(seed)
    reps_out: list[dict[str, Any]] = []
    errors: list[str] = []
    async with anyio.create_task_group() as tg:
        group = SessionGroup(tg, home, env, logdir, marker)
        try:
            live = await group.start(n)
            await _warm(live, corpus)
            for rep in range(reps):
                victim_pid = owner_pid(await live[0].call("coordination_status"))
                victim = next((s for s in live if s.pid == victim_pid), None)
                if victim is None or victim.pid is None:
                    reps_out.append({"rep": rep, "error": f"owner pid {victim_pid} is not a session's"})
                    break
                others = [s for s in live if s is not victim]
                await wait_standby(others)
                fl = _KillLoop(corpus, errors)
                with anyio.fail_after(300):
                    async with anyio.create_task_group() as inner:
                        for s in others:
                            inner.start_soon(fl.loop, s)
                        await anyio.sleep(0.5)  # steady state: everyone forwarding to the owner
                        fl.t_kill = t_kill = time.perf_counter()
                        signal_pid(victim.pid, signal.SIGKILL)
                        with anyio.move_on_after(120):
                            await fl.seen.wait()
                        fl.stop.set()
                log = fl.log
                after = [t1 for t0, t1, ok in log if ok and t0 >= t_kill]
                spanning = [t1 - t0 for t0, t1, _ok in log if t0 < t_kill <= t1]
                reps_out.append({"rep": rep, "killed_pid": victim.pid,
                                 "recovery_ms": round((min(after) - t_kill) * 1000, 1) if after else None,
                                 "in_flight_ms": round(max(spanning) * 1000, 1) if spanning else None,
                                 "failed_calls": sum(1 for _t0, t1, ok in log if not ok and t1 >= t_kill)})
                await group.stop([victim])
                live = others + await group.start(1)
                with anyio.fail_after(300):
                    await live[-1].call("retrieve_memory", {"query": corpus.query()})
        finally:
            await group.stop()
    rec = [r["recovery_ms"] for r in reps_out if r.get("recovery_ms") is not None]
    return {"n": n, "reps": reps_out, "recovery": summarize(rec, 1), "errors": errors[:20],
            "error_count": len(errors)}


async def throughput_scenario(home: Path, env: dict[str, str], logdir: Path, marker: str, n: int, stores: int,
                              seed: int) -> dict[str, Any]:
    corpus = Corpus(seed)
    lat: list[float] = []
    errors: list[str] = []
    stages: dict[str, Any] | None = None
    cpu: dict[str, float] = {}
    async with anyio.create_task_group() as tg:
        group = SessionGroup(tg, home, env, logdir, marker)
        try:
            live = await group.start(n)
            await _warm(live, corpus)
            if n > 1:
                await wait_standby(live)  # steady state: the standby's model load is not measured
            plans = [[store_args(corpus) for _ in range(stores)] for _ in live]

            async def drive(s: Session, plan: list[dict[str, Any]]) -> None:
                for args in plan:
                    await timed(s, "store_memory", args, lat, errors)

            cpu0 = [cpu_s(s.pid) for s in live], time.process_time()
            t0 = time.perf_counter()
            with anyio.fail_after(1800):
                async with anyio.create_task_group() as inner:
                    for s, plan in zip(live, plans, strict=True):
                        inner.start_soon(drive, s, plan)
            wall = time.perf_counter() - t0
            used = [cpu_s(s.pid) - c for s, c in zip(live, cpu0[0], strict=True)], time.process_time() - cpu0[1]
            statuses = [await s.status() for s in live]
            roles = [st["this_process"]["role"] for st in statuses]
            owner_st = next((st for st, r in zip(statuses, roles, strict=True) if r == "owner"), None)
            stages = stage_timings(owner_st) if owner_st is not None else None
            per = 1000 / max(1, len(lat))  # CPU ms per acknowledged store, by process role
            cpu = {"owner": round(sum(u for u, r in zip(used[0], roles, strict=True) if r == "owner") * per, 2),
                   "other_sessions": round(sum(u for u, r in zip(used[0], roles, strict=True) if r != "owner") * per,
                                           2),
                   "client": round(used[1] * per, 2)}
        finally:
            await group.stop()
    return {"n": n, "stores_per_session": stores, "wall_s": round(wall, 3), "owner_stages": stages,
            "cpu_ms_per_store": cpu,
            "stores_per_s": round(len(lat) / wall, 2) if wall > 0 else None, "store": summarize(lat),
            "errors": errors[:20], "error_count": len(errors)}


async def peer_scenario(clarity_home: Path, peer_python: Path, peer_dir: Path, env: dict[str, str], logdir: Path,
                        marker: str, pairs: int, seed: int) -> dict[str, Any]:
    corpus = Corpus(seed)
    c_st: list[float] = []
    c_rt: list[float] = []
    p_st: list[float] = []
    p_rt: list[float] = []
    errors: list[str] = []
    cache = peer_model_cache(peer_dir / "fastembed")
    out: dict[str, Any] = {}
    with (logdir / "peer.log").open("a", encoding="utf-8") as errlog:
        async with anyio.create_task_group() as tg:
            group = SessionGroup(tg, clarity_home, env, logdir, marker)
            try:
                (c,) = await group.start(1)
                t0 = time.perf_counter()
                async with peer_session(peer_python, peer_dir / "store", cache, errlog) as p:
                    out["peer_start_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                    await c.call("retrieve_memory", {"query": corpus.query()})  # both warm before timing
                    await p.call("qdrant-find", {"query": corpus.query()})
                    for _ in range(pairs):
                        text, query = corpus.sentence(), corpus.query()
                        await timed(c, "store_memory", {"content": text, "tags": ["bench"]}, c_st, errors)
                        await timed(p, "qdrant-store", {"information": text}, p_st, errors)
                        await timed(c, "retrieve_memory", {"query": query, "limit": 5}, c_rt, errors)
                        await timed(p, "qdrant-find", {"query": query}, p_rt, errors)
            finally:
                await group.stop()
    leftovers = sorted(str(x.relative_to(cache)) for x in cache.rglob("*") if "fast-all-MiniLM-L6-v2" not in str(x))
    out.update(clarity_store=summarize(c_st), clarity_retrieve=summarize(c_rt), peer_store=summarize(p_st),
               peer_retrieve=summarize(p_rt), errors=errors[:20], error_count=len(errors),
               peer_offline_ok=not leftovers, peer_cache_extra_files=leftovers[:10])
    return out
