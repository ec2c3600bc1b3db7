"""`clarity demo`: two real `clarity serve` sessions on one store, driven over MCP, printing what happens.

Session A stores a few memories; session B (a separate server process) finds them by meaning; then
both report who owns the store. Exits 1 if any memory was not found by the other session.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

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


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _demo(home: Path, keep: bool) -> int:
    _say(f"store: {home}")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    with (home / "logs" / "demo-servers.stderr").open("a") as errlog:
        failures = await _sessions(home, errlog)
    if keep:
        _say(f"server logs: {home / 'logs'}")
    _say("\ndemo " + ("passed" if failures == 0 else f"FAILED: {failures} memories not found"))
    return 0 if failures == 0 else 1


async def _sessions(home: Path, errlog: Any) -> int:
    """Session A stores, session B retrieves; returns how many memories B did not find."""
    failures = 0
    t0 = time.perf_counter()
    async with SessionClient(home, errlog=errlog) as a, SessionClient(home, errlog=errlog) as b:
        _say(f"started two `clarity serve` sessions over stdio in {time.perf_counter() - t0:.2f} s")
        _say("\nsession A stores:")
        ids = []
        for memory_type, content in MEMORIES:
            t = time.perf_counter()
            r = await a.call("store_memory", {"content": content, "memory_type": memory_type, "tags": ["demo"]})
            ids.append(r["id"])
            state = "stored" if r["stored"] else "already there"
            ms = (time.perf_counter() - t) * 1000
            _say(f"  [{memory_type:10}] {content}  -> {state} {r['id'][:8]} ({ms:.0f} ms)")
        _say("\nsession B asks in other words:")
        for query, want in zip(QUERIES, ids, strict=True):
            t = time.perf_counter()
            res = await b.call("retrieve_memory", {"query": query, "limit": 1})
            ms = (time.perf_counter() - t) * 1000
            if res["memories"] and res["memories"][0]["id"] == want:
                hit = res["memories"][0]
                _say(f"  {query!r}\n      -> {hit['content']!r} (similarity {hit['similarity']:.2f}, {ms:.0f} ms)")
            else:
                failures += 1
                _say(f"  {query!r}\n      -> NOT FOUND")
        for name, s in (("A", a), ("B", b)):
            st = await s.call("coordination_status")
            me = st["this_process"]
            _say(f"\nsession {name}: pid {me['pid']}, role {me['role']}, engine open {me['engine_open']}, "
                 f"model loaded {me['model_loaded']}")
        stats = await b.call("memory_stats")
        _say(f"\nstore holds {stats['total']} memories ({stats['engine']}, {stats['model']}, {stats['dims']} dims), "
             f"served by pid {stats['served_by_pid']}")
    return failures


def run_demo(home: str | None) -> int:
    if home:
        return anyio.run(_demo, Path(home).resolve(), True)
    with tempfile.TemporaryDirectory(prefix="clarity-demo-") as tmp:
        return anyio.run(_demo, Path(tmp) / "home", False)
