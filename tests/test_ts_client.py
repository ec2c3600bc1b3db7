"""A real MCP client that is not Python: the TypeScript SDK's stdio client (tests/ts_client)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

TS = Path(__file__).parent / "ts_client"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (TS / "node_modules" / "@modelcontextprotocol" / "sdk").exists(),
    reason="needs node and `npm ci` in tests/ts_client (.ci/run does both)",
)


def test_typescript_client_stores_and_retrieves_50(home: Path) -> None:
    cmd = ["node", str(TS / "client.mjs"), sys.executable, "-m", "clarity", "serve", "--home", str(home)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CLARITY_TS_N": "50"})
    summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, (summary, proc.stderr[-2000:])
    assert summary["errors"] == []
    assert summary["stored"] == 50 and summary["retrieved"] == 50
    assert {"store_memory", "retrieve_memory", "list_memories", "get_memory", "update_memory",
            "delete_memory", "memory_stats", "coordination_status"} <= set(summary["tools"])
