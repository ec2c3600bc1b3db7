"""The stdio transport of `clarity serve` (clarity/mcp_stdio.py), through real servers: pipes served on the
event loop with the SDK's claim of fd 0/1 kept, a line far over asyncio's default 64 KiB read whole, a file on
stdin served by the SDK's transport, and the SDK's transport on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import cli, run_async
from tests.harness.processes import own_pid


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
    # initialize runs before the next line is read; the SDK cancels what is still running when stdin ends,
    # so tools/list (read with the end of the file right behind it) may go unanswered, never wrongly
    assert answers[1]["result"]["serverInfo"]["name"] == "alunai-clarity"
    if 2 in answers:
        assert "store_memory" in {t["name"] for t in answers[2]["result"]["tools"]}


def test_the_sdk_transport_on_request(home: Path) -> None:
    """CLARITY_THREADED_STDIO=1: the SDK's own (threaded) transport serves the same calls."""
    async def scenario() -> None:
        async with SessionClient(home, env={"CLARITY_THREADED_STDIO": "1"}) as s:
            stored = await s.call("store_memory", {"content": "Retries of the billing job back off exponentially."})
            found = await s.call("retrieve_memory", {"query": "how do billing retries back off"})
            assert found["memories"][0]["id"] == stored["id"]

    run_async(scenario)
