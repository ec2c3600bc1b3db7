"""`clarity demo`: the headline in a few seconds, with real processes.

Two real `clarity serve` sessions (MCP over stdio, as Claude Code starts them) share one store. Session
A stores a few memories and so becomes the store's owner; session B finds each of them by meaning
(its calls go to A). Then A is killed with SIGKILL, with no warning, as a crashed or closed window
would be; B keeps serving: it takes the store over and finds every memory again, and the store still
holds all of them. The demo ends with the two commands that set Clarity up for a real project.

Offline (the model ships with Clarity) and bounded: every call has a deadline and the whole demo gives
up after `DEMO_DEADLINE_S`. Exits 0 when nothing was lost and every memory was found, 1 otherwise.
`--json` prints one JSON document instead of the story.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from clarity.config import model_cache_dir
from clarity.session_client import SessionClient

MEMORIES = [
    ("decision", "We use PostgreSQL with pgbouncer for connection pooling"),
    ("preference", "Alice prefers pytest over unittest for new tests"),
    ("fact", "The API server listens on port 8080"),
    ("note", "Deployments go out every Tuesday after the standup"),
]
QUERIES = [
    "what database and connection pool do we use",
    "which test framework should new tests use",
    "which port does the api run on",
    "when do we deploy to production",
]
SETUP = [  # Clarity is installed (this demo runs): register it with Claude Code in the project
    "cd /path/to/your/project",
    "claude mcp add clarity -- clarity serve",
]
DEMO_DEADLINE_S = 180.0  # a very busy machine; the demo takes a few seconds
CALL_TIMEOUT_S = 60.0

Say = Callable[[str], None]


class _Session:
    """One `clarity serve` held open by a task of its own (anyio scopes are left in the task that
    entered them); a client whose server was killed closes quietly."""

    def __init__(self, home: Path, errlog: TextIO) -> None:
        self.home = home
        self.errlog = errlog
        # the servers use this process's model cache (the user's: `$XDG_CACHE_HOME/clarity` ...), whatever
        # part of the environment reaches them
        cache = model_cache_dir()
        self.env = {"CLARITY_MODEL_CACHE": str(cache)} if cache is not None else {}
        self.client: SessionClient | None = None
        self.failed: str | None = None
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.done = anyio.Event()

    async def run(self) -> None:
        try:
            async with SessionClient(self.home, env=self.env, errlog=self.errlog,
                                     read_timeout_s=CALL_TIMEOUT_S) as c:
                self.client = c
                self.ready.set()
                with anyio.move_on_after(DEMO_DEADLINE_S):
                    await self.stop.wait()
        except Exception as e:  # noqa: BLE001 - a killed server makes its client's exit fail
            if not self.ready.is_set():
                self.failed = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()
            self.done.set()

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        if self.client is None:
            raise RuntimeError(f"the session did not start: {self.failed}")
        return await self.client.call(tool, args)


async def _find_all(session: _Session, ids: list[str], say: Say) -> list[dict[str, Any]]:
    found = []
    for query, want in zip(QUERIES, ids, strict=True):
        t = time.perf_counter()
        res = await session.call("retrieve_memory", {"query": query, "limit": 1})
        ms = (time.perf_counter() - t) * 1000
        top: dict[str, Any] = res["memories"][0] if res["memories"] else {}
        ok = top.get("id") == want
        found.append({"query": query, "id": want, "found": ok, "similarity": top.get("similarity") if ok else None,
                      "ms": round(ms, 1)})
        if ok:
            say(f"  {query!r}\n      -> {top['content']!r} (similarity {top['similarity']:.2f}, {ms:.0f} ms)")
        else:
            say(f"  {query!r}\n      -> NOT FOUND")
    return found


async def _story(home: Path, errlog: TextIO, say: Say) -> dict[str, Any]:
    t0 = time.perf_counter()
    report: dict[str, Any] = {"home": str(home)}
    async with anyio.create_task_group() as tg:
        a, b = _Session(home, errlog), _Session(home, errlog)
        tg.start_soon(a.run)
        tg.start_soon(b.run)
        try:
            await a.ready.wait()
            await b.ready.wait()
            pid_a = (await a.call("coordination_status"))["this_process"]["pid"]
            pid_b = (await b.call("coordination_status"))["this_process"]["pid"]
            report["sessions"] = {"A": pid_a, "B": pid_b}
            say(f"started two `clarity serve` sessions over stdio, A (pid {pid_a}) and B (pid {pid_b}), in "
                f"{time.perf_counter() - t0:.1f} s, sharing the store {home}")

            say("\nsession A stores (its first call makes it the store's owner):")
            ids, stored = [], []
            for memory_type, content in MEMORIES:
                t = time.perf_counter()
                r = await a.call("store_memory", {"content": content, "memory_type": memory_type, "tags": ["demo"]})
                ids.append(r["id"])
                stored.append({"id": r["id"], "memory_type": memory_type, "content": content, "stored": r["stored"]})
                state = "stored" if r["stored"] else "already there"
                say(f"  [{memory_type:10}] {content}  -> {state} {r['id'][:8]} "
                    f"({(time.perf_counter() - t) * 1000:.0f} ms)")
            report["stored"] = stored

            say("\nsession B asks in other words (its calls go to the owner, A):")
            report["found_before_kill"] = await _find_all(b, ids, say)

            owner = (await b.call("coordination_status"))["owner"] or {}
            victim = owner.get("pid") or pid_a
            name = "A" if victim == pid_a else "B"
            survivor = b if victim == pid_a else a
            say(f"\nsession {name} owns the store (pid {victim}): killing it with SIGKILL, no warning, "
                "as a crashed window would be")
            os.kill(victim, signal.SIGKILL)
            report["killed_owner_pid"] = victim

            t = time.perf_counter()
            first = await survivor.call("memory_stats")
            report["failover_ms"] = round((time.perf_counter() - t) * 1000, 1)
            say(f"the other session keeps serving: its first call after the kill answered in "
                f"{report['failover_ms']:.0f} ms, served by pid {first['served_by_pid']}")
            say("\nit asks again, now from the store it serves itself:")
            report["found_after_kill"] = await _find_all(survivor, ids, say)
            listed = await survivor.call("list_memories", {"tags": ["demo"], "limit": 100})
            present = {m["id"] for m in listed["memories"]}
            report["lost"] = [i for i in ids if i not in present]
            report["total_after_kill"] = listed["total"]
            report["served_by_pid"] = (await survivor.call("memory_stats"))["served_by_pid"]
            say(f"the store holds {listed['total']} memories: "
                + ("nothing lost" if not report["lost"] else f"{len(report['lost'])} LOST"))
        finally:
            a.stop.set()
            b.stop.set()
    report["elapsed_s"] = round(time.perf_counter() - t0, 2)
    return report


async def _demo(home: Path, keep: bool, as_json: bool) -> int:
    def say(text: str = "") -> None:
        if not as_json:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    say("Clarity demo: two real MCP sessions share one store; the owner is killed; nothing is lost.\n")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"home": str(home)}
    try:
        with (home / "logs" / "demo-servers.stderr").open("a") as errlog, anyio.fail_after(DEMO_DEADLINE_S):
            report = await _story(home, errlog, say)
    except TimeoutError:
        report["error"] = f"the demo did not finish within {DEMO_DEADLINE_S:.0f} s"
    except Exception as e:  # noqa: BLE001 - the demo reports what went wrong in one line
        report["error"] = f"{type(e).__name__}: {e}"
    found = report.get("found_before_kill", []) + report.get("found_after_kill", [])
    report["passed"] = ("error" not in report and len(found) == 2 * len(MEMORIES)
                        and all(f["found"] for f in found) and not report.get("lost"))
    report["setup"] = SETUP
    if keep:
        say(f"server logs: {home / 'logs'}")
    if report["passed"]:
        say(f"\ndemo passed in {report['elapsed_s']:.1f} s")
    else:
        why = report.get("error") or "a memory was not found or was lost"
        say(f"\ndemo FAILED: {why} (server logs: {home / 'logs' / 'demo-servers.stderr'})")
    say("\nSet Clarity up for a real project (then `claude mcp list` shows clarity connected):")
    for cmd in SETUP:
        say(f"  {cmd}")
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if report["passed"] else 1


def run_demo(home: str | None, as_json: bool = False) -> int:
    if home:
        return anyio.run(_demo, Path(home).resolve(), True, as_json)
    with tempfile.TemporaryDirectory(prefix="clarity-demo-") as tmp:
        return anyio.run(_demo, Path(tmp) / "home", False, as_json)
