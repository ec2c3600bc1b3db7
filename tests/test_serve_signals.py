"""How a client ends a `clarity serve` session: Claude Code closes stdin, then sends SIGINT and SIGTERM a few
milliseconds apart. Every such end must release the lease and exit promptly. (Regression: a second signal
arriving while the first close ran started a nested close that waited forever for the first one's lock,
holding the lease: about 40% of session ends after a takeover, seen with Claude Code 2.1.332.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import status


def _rpc(proc: subprocess.Popen[bytes], msg: dict[str, Any]) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(msg).encode() + b"\n")
    proc.stdin.flush()
    if "id" not in msg:
        return None
    while True:
        line = proc.stdout.readline()
        assert line, f"server {proc.pid} closed stdout (exit {proc.poll()})"
        reply: dict[str, Any] = json.loads(line)
        if reply.get("id") == msg["id"]:
            return reply


def _owner_session(home: Path) -> subprocess.Popen[bytes]:
    """A real `clarity serve` that has answered a store, so it owns the lease (engine open, flusher running)."""
    proc = subprocess.Popen([sys.executable, "-m", "clarity", "serve", "--home", str(home)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    init = _rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert init is not None and "result" in init, init
    _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    stored = _rpc(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "store_memory", "arguments": {"content": f"signals {time.time_ns()}"}}})
    assert stored is not None and not stored["result"].get("isError"), stored
    return proc


@pytest.mark.parametrize("gap_s", [0.0, 0.005, 0.05])
def test_stdin_end_then_sigint_and_sigterm_always_exit_and_release(home: Path, gap_s: float) -> None:
    for _round in range(3):
        proc = _owner_session(home)
        try:
            assert status(home)["owner"]["pid"] == proc.pid
            assert proc.stdin is not None
            proc.stdin.close()  # stdin's end starts a close ...
            os.kill(proc.pid, signal.SIGINT)  # ... and the signals arrive during it
            time.sleep(gap_s)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert status(home)["owner"] is None  # released: the next session takes over at once
