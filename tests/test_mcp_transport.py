"""The stdio transport of `clarity serve` (clarity/mcp_stdio.py) and the early embedding it feeds
(clarity/mcp_early.py), through real servers: pipes served on the event loop with the SDK's claim of fd 0/1
kept, a line far over asyncio's default 64 KiB read whole, a file on stdin served by the SDK's transport,
the SDK's transport on request, and early vectors that are the vectors a store computes anyway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from clarity.mcp_early import MAX_LINE, early_text
from clarity.memory.indexed_text import dense_text
from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import cli, run_async
from tests.harness.processes import own_pid


def _line(name: str, arguments: Any, method: str = "tools/call") -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": method,
                         "params": {"name": name, "arguments": arguments}}) + b"\n"


def test_early_text_is_what_the_call_will_embed() -> None:
    assert early_text(_line("retrieve_memory", {"query": "why sqlite?", "limit": 5})) == "why sqlite?"
    ctx = {"file": "db.py", "line": 3}
    assert early_text(_line("store_memory", {"content": "Use WAL.", "context": ctx})) == dense_text(
        {"content": "Use WAL.", "context": ctx})
    assert early_text(_line("store_memory", {"content": "Use WAL."})) == "Use WAL."
    # nothing for what it cannot know or need not embed
    assert early_text(_line("store_memory", {"content": "key <private>s3cret</private> here"})) is None
    assert early_text(_line("retrieve_memory", {"query": "   "})) is None
    assert early_text(_line("retrieve_memory", {"query": 5})) is None
    assert early_text(_line("list_memories", {"limit": 5})) is None
    assert early_text(_line("retrieve_memory", {"query": "x"}, method="tools/list")) is None
    assert early_text(b'{"method": "tools/call", "params": {"name": "store_memory", "arguments": [1]}}\n') is None
    assert early_text(b'{"method": "tools/call", "params": "store_memory"}\n') is None
    assert early_text(b'{"method": "tools/call", "store_memory" not json\n') is None
    assert early_text(_line("retrieve_memory", {"query": "x" * MAX_LINE})) is None


def _fd_target(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc/PID/fd (Linux)")
def test_pipes_keep_the_claim_of_fd_0_and_1_and_read_a_long_line_whole(home: Path) -> None:
    async def scenario() -> None:
        async with SessionClient(home) as s:
            st = await s.call("coordination_status")
            pid = own_pid(st)
            # while serving, fd 0 reads the null device and fd 1 writes where stderr goes: stray output of
            # Clarity, a library or a child can never reach the MCP channel
            assert _fd_target(pid, 0) == os.devnull
            assert _fd_target(pid, 1) == _fd_target(pid, 2)
            # a call of 400 KB (six times asyncio's default line limit) is read whole and refused in words
            with pytest.raises(ToolCallError, match="content"):
                await s.call("store_memory", {"content": "é" * 200_000})
            stored = await s.call("store_memory", {"content": "After the long line the channel still works."})
            assert stored["stored"] is True
            found = await s.call("retrieve_memory", {"query": "does the channel still work"})
            assert found["memories"][0]["id"] == stored["id"]

    run_async(scenario)


def test_a_file_on_stdin_is_served_by_the_sdk_transport(home: Path) -> None:
    """Not a pipe (a regular file): the SDK's own transport serves it, to the end of the file."""
    cli(home, "status")  # makes the home
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "file", "version": "1"}}}
    lines = [init, {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
    src = home.parent / "calls.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with src.open("rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "clarity", "serve", "--home", str(home)], stdin=stdin,
                              capture_output=True, timeout=120, env=dict(os.environ))
    answers = {a["id"]: a for a in map(json.loads, proc.stdout.decode().splitlines())}
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert answers[1]["result"]["serverInfo"]["name"] == "alunai-clarity"
    assert "store_memory" in {t["name"] for t in answers[2]["result"]["tools"]}


def test_the_sdk_transport_on_request_and_early_vectors_equal_a_stores_own(home: Path) -> None:
    """CLARITY_THREADED_STDIO=1 serves through the SDK's transport (no early embedding: its lines are not
    seen); the pipe transport embeds early, and what it stores is what a store computes on its own."""
    ctx = {"file": "billing/retry.py"}
    texts = ["Retries of the billing job back off exponentially, capped at ten minutes.",
             "The nightly export runs in UTC, not in the office's time zone."]

    async def scenario(env: dict[str, str], content: str) -> dict[str, Any]:
        async with SessionClient(home, env=env) as s:
            await s.call("retrieve_memory", {"query": "warm the model"})
            stored = await s.call("store_memory", {"content": content, "context": ctx})
            found = await s.call("retrieve_memory", {"query": "how do billing retries back off"})
            assert stored["stored"] is True and found["memories"]
            return dict((await s.call("coordination_status"))["timings"]["counters"])

    threaded = run_async(scenario, {"CLARITY_THREADED_STDIO": "1"}, texts[0])
    assert "early_embeds" not in threaded
    piped = run_async(scenario, {}, texts[1])
    assert piped.get("early_embeds_used", 0) >= 2, piped  # the store and the retrieve

    cli(home, "backup")
    (backup,) = (home / "backups").glob("clarity-backup-*.jsonl")
    records = [json.loads(x) for x in backup.read_text().splitlines()[1:]]
    by_content = {r["payload"]["content"]: r["vector"] for r in records}
    import numpy as np

    from clarity.config import DEFAULT_MODEL
    from clarity.encoders.dense import Embedder

    model = Embedder(DEFAULT_MODEL, home / "cache")
    for content in texts:
        want = np.asarray(model.embed([dense_text({"content": content, "context": ctx})])[0])
        got = np.asarray(by_content[content])
        assert float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got))) > 0.99999, content
