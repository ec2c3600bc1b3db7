"""Writer and reader processes of the stress run (scripts/stress.py).

Each worker is its own process ("spawn") driving its own `clarity serve` through a `Session`. Every
acknowledged write, every error (with its kind) and every call's latency go to the worker's ledger
(`<work>/<name>.jsonl`, flushed line by line). When a session's server dies the worker starts a new
session and re-sends the same content: the store deduplicates identical content, so a write the dead
owner already made comes back as `duplicate_of`, which counts as acknowledged. Bounded: a deadline, a
cap on attempts per write and on sessions, and a stop file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from tests.harness.ledger import Jsonl, read_jsonl
from tests.harness.sessions import Session

WORDS = ("cache", "lease", "owner", "socket", "vector", "qdrant", "embedding", "retry", "deadline", "epoch",
         "handoff", "forward", "session", "memory", "decision", "refactor", "index", "schema", "token",
         "latency", "timeout", "backoff", "heartbeat", "waiter", "ticket", "payload", "cosine", "batch",
         "model", "config", "project", "agent", "prompt", "review", "deploy", "branch", "migration")

CONN_KINDS = ("killed_session", "connection_lost")


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


class Worker:
    """One writer or reader: owns a Session in a task group, restarts it when its server dies."""

    def __init__(self, cfg: dict[str, Any], tg: Any) -> None:
        self.cfg = cfg
        self.tg = tg
        self.name = f"{cfg['role'][0]}{cfg['index']}"
        self.work = Path(cfg["work"])
        self.log = Jsonl(self.work / f"{self.name}.jsonl")
        self.session: Session | None = None
        self.session_no = 0
        self.rng = random.Random(cfg["seed"])

    def expired(self) -> bool:
        return (time.time() >= self.cfg["deadline_at"] or os.getppid() != self.cfg["parent_pid"]
                or (self.work / "stop-all").exists())

    async def open_session(self) -> bool:
        """Start a session; False when the cap on sessions is reached. On a failed start, logs the
        error and leaves `self.session` None (the caller backs off and retries)."""
        if self.session_no >= self.cfg["max_sessions"]:
            return False
        self.session_no += 1
        sid = f"{self.cfg['marker']}{self.name}-{self.session_no}"
        s = Session(self.session_no, Path(self.cfg["home"]), dict(self.cfg["env"], CLARITY_SESSION_ID=sid),
                    self.work / f"{self.name}.server.log", self.cfg["read_timeout_s"])
        t0, p0 = time.time(), time.perf_counter()
        self.tg.start_soon(s.run)
        with anyio.move_on_after(self.cfg["read_timeout_s"]):
            await s.ready.wait()
        ms = round((time.perf_counter() - p0) * 1000, 2)
        if s.client is None:
            s.stopping.set()
            self.log.write(ev="error", op="session_start", kind="session_start",
                           msg=str(s.start_error or "start timed out")[:300], t0=t0, t1=time.time(), ms=ms,
                           session=sid)
            return True
        self.session = s
        self.log.write(ev="session", session=sid, t=time.time(), ms=ms)
        return True

    async def close_session(self) -> None:
        s, self.session = self.session, None
        if s is not None:
            s.stopping.set()
            with anyio.move_on_after(30):
                await s.done.wait()

    def killed_sessions(self) -> set[str]:
        return {str(k.get("session")) for k in read_jsonl(self.work / "kills.jsonl")}

    async def call(self, tool: str, args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One call; returns (result or None, log record). Drops the session when its server died."""
        from clarity.session_client import ToolCallError

        assert self.session is not None
        t0, p0 = time.time(), time.perf_counter()
        sid = self.session.env["CLARITY_SESSION_ID"]
        rec: dict[str, Any]
        try:
            res = await self.session.call(tool, args)
        except ToolCallError as e:
            rec = {"ev": "error", "kind": classify_tool_error(e.message), "msg": e.message[:1000]}
            res = None
        except Exception as e:  # the connection or the client failed
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
        await anyio.sleep(min(0.5, 0.02 * (2 ** min(attempt, 5))) * (0.5 + self.rng.random()))

    async def ensure_session(self, attempt: int) -> bool | None:
        """True when a session is ready; None to retry after a backoff; False to give up."""
        if self.session is not None:
            return True
        if not await self.open_session():
            return False
        if self.session is None:
            await self.backoff(attempt + 1)
            return None
        return True

    async def write_one(self, seq: int) -> bool:
        """Store item `seq` until acknowledged; False when the worker gave up."""
        idx = self.cfg["index"]
        words = " ".join(self.rng.choice(WORDS) for _ in range(6))
        content = f"stress writer {idx} item {seq} token {uuid.uuid4().hex[:12]}: note about {words}"
        args = {"content": content, "memory_type": "note", "tags": ["stress", f"w{idx}"]}
        for attempt in range(self.cfg["max_attempts"]):
            if self.expired():
                return False
            ready = await self.ensure_session(attempt)
            if ready is False:
                return False
            if ready is None:
                continue
            res, rec = await self.call("store_memory", args)
            if res is not None:
                self.log.write(ev="ack", seq=seq, id=res.get("id"), content=content, stored=res.get("stored"),
                               dup=res.get("duplicate_of") is not None, attempt=attempt,
                               **{k: rec[k] for k in ("op", "t0", "t1", "ms", "session")})
                return True
            self.log.write(seq=seq, attempt=attempt, **rec)
            if rec["kind"] not in CONN_KINDS:
                await self.backoff(attempt + 1)
        return False

    async def run_writer(self) -> int:
        writes = self.cfg["writes"]
        acked = gave_up = 0
        crashed = None
        try:
            for seq in range(writes):
                if not await self.write_one(seq):
                    gave_up = writes - seq
                    break
                acked += 1
        except Exception as e:  # report and exit non-zero
            crashed = f"{type(e).__name__}: {e}"
        finally:
            await self.close_session()
            self.log.write(ev="done", t=time.time(), acked=acked, gave_up=gave_up, crashed=crashed,
                           sessions=self.session_no)
            self.log.close()
        return 2 if crashed else (3 if gave_up else 0)

    async def run_reader(self) -> int:
        stop = self.work / "stop-readers"
        calls = 0
        crashed = None
        try:
            while not stop.exists() and not self.expired() and calls < self.cfg["max_reads"]:
                ready = await self.ensure_session(2)
                if ready is False:
                    break
                if ready is None:
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
        except Exception as e:
            crashed = f"{type(e).__name__}: {e}"
        finally:
            await self.close_session()
            self.log.write(ev="done", t=time.time(), calls=calls, crashed=crashed, sessions=self.session_no)
            self.log.close()
        return 2 if crashed else 0


async def _run(cfg: dict[str, Any]) -> int:
    async with anyio.create_task_group() as tg:
        w = Worker(cfg, tg)
        code = await (w.run_writer() if cfg["role"] == "writer" else w.run_reader())
        tg.cancel_scope.cancel()  # sessions were closed above; nothing else runs
    return code


def worker_entry(cfg: dict[str, Any]) -> None:
    """Process target (multiprocessing "spawn"): run one worker and exit with its status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    sys.exit(asyncio.run(_run(cfg)))
