"""The real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed in tests/ts_client by `npm ci`)
registers Clarity and connects to it, offline, from a subfolder of a git repository: `claude mcp add`
(local scope) and the `.mcp.json` project form, then `claude mcp list`, which starts each server and
prints "Connected". Claude Code gets its own HOME, so no user's configuration is read or written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

CLI = Path(__file__).parent / "ts_client" / "node_modules" / "@anthropic-ai" / "claude-code" / "cli.js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("git") is None or not CLI.exists(),
    reason="needs node, git and `npm ci` in tests/ts_client (.ci/run does that where npm exists)",
)


def claude(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1"}
    return subprocess.run(["node", str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_claude_mcp_add_and_list_connect_from_a_subfolder(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sub = repo / "services" / "api"
    sub.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    home = tmp_path / "claude-home"
    home.mkdir()
    serve = [sys.executable, "-m", "clarity", "serve"]

    added = claude(sub, home, "mcp", "add", "clarity", "--", *serve)
    assert added.returncode == 0, added.stderr[-2000:]
    config = orjson.loads((home / ".claude.json").read_bytes())
    assert any("clarity" in p.get("mcpServers", {}) for p in config["projects"].values())

    # the project form, checked in at the repository root
    (repo / ".mcp.json").write_text(orjson.dumps(
        {"mcpServers": {"clarity-project": {"command": serve[0], "args": serve[1:]}}}).decode())

    listed = claude(sub, home, "mcp", "list")
    assert listed.returncode == 0, (listed.stdout, listed.stderr[-2000:])
    lines = {line.split(":", 1)[0]: line for line in listed.stdout.splitlines() if ":" in line}
    assert "Connected" in lines.get("clarity", ""), listed.stdout
    assert "Connected" in lines.get("clarity-project", ""), listed.stdout

    # both servers, started in the subfolder, chose the store at the repository root
    store = repo / ".claude" / "alunai-clarity"
    assert (store / "config.json").is_file()
    assert not (sub / ".claude" / "alunai-clarity").exists()
    log = (store / "logs" / "clarity.log").read_text()
    assert log.count(f"home {store.resolve()}") >= 2
