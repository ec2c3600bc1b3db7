"""Clarity leaves the user's repository clean: after the terminal commands and a served MCP session,
started in a real git repository without --home (so the store goes to `.claude/alunai-clarity` at its
root), `git status --porcelain` is empty and no file under the repository takes over 1 MB (the model
lives in the user's cache).

The servers get no CLARITY_MODEL_CACHE here: the per-user default (`$XDG_CACHE_HOME/clarity`) is what
runs, pointed at the run's shared copy so no 90 MB are built again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from mcp.client.stdio import StdioServerParameters

from clarity.session_client import SessionClient
from tests.conftest import run_async

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary to make a repository")

STORE = Path(".claude") / "alunai-clarity"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src" / "app").mkdir(parents=True)
    (root / "src" / "app" / "main.py").write_text("print('hello')\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root.resolve()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No home of any kind: the store follows the repository; the model cache is the user's default."""
    shared = Path(os.environ["CLARITY_MODEL_CACHE"])
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "clarity").symlink_to(shared, target_is_directory=True)
    drop = ("CLARITY_HOME", "CLAUDE_PROJECT_DIR", "CLARITY_MODEL_CACHE", "CLARITY_SHARE_WORKTREES")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "XDG_CACHE_HOME": str(xdg)}


def clarity(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "clarity", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, (args, proc.stderr[-2000:])
    return proc


def big_files(root: Path, limit: int = 1 << 20) -> list[str]:
    """Files under `root`, outside the store's engine folder, taking more than `limit` bytes of disk (by
    blocks, not length: the model's 90 MB of weights would count whole). The engine folder is the store
    itself (git-ignored): its write-ahead log segment in use is backed on disk on purpose (a full disk
    must refuse a write, not crash the owner), 32 MB."""
    engine = root / STORE / "qdrant"
    return [str(p) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and engine not in p.parents and p.stat().st_blocks * 512 > limit]


def model_files(root: Path) -> list[str]:
    """Model weights (ONNX files) anywhere under `root`."""
    return [str(p) for p in root.rglob("*") if ".onnx" in p.name]


def test_commands_and_a_served_session_leave_git_status_empty(repo: Path, env: dict[str, str]) -> None:
    sub = repo / "src" / "app"
    # reading first: nothing exists yet, and nothing is made
    assert "no store yet" in clarity(sub, env, "status").stdout
    clarity(sub, env, "search", "anything")
    clarity(sub, env, "context")
    assert not (repo / ".claude").exists() and git(repo, "status", "--porcelain") == ""

    stored = orjson.loads(clarity(sub, env, "store", "The payments service retries ERR_PAY_409 three times",
                                  "--json").stdout)
    found = orjson.loads(clarity(sub, env, "search", "ERR_PAY_409", "--json").stdout)
    assert [m["id"] for m in found["memories"]][:1] == [stored["id"]]
    assert "ERR_PAY_409" in clarity(sub, env, "context").stdout
    assert str(repo / STORE) in clarity(sub, env, "status").stdout

    async def session() -> None:
        client = SessionClient(repo)
        client.params = StdioServerParameters(command=sys.executable, args=["-m", "clarity", "serve"], env=env,
                                              cwd=str(sub))
        async with client as s:
            await s.call("store_memory", {"content": "Deploys go out on Tuesdays", "memory_type": "fact"})
            hits = await s.call("retrieve_memory", {"query": "ERR_PAY_409"})
            assert hits["memories"][0]["id"] == stored["id"]

    run_async(session)

    assert (repo / STORE / "config.json").is_file() and (repo / STORE / "logs" / "clarity.log").is_file()
    assert git(repo, "status", "--porcelain") == "", "the store shows in git status"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert big_files(repo) == [] and model_files(repo) == []  # the model is not in the repository...
    assert not any((repo / STORE / "cache").iterdir())
    # ...but in the user's cache, where the session found it
    assert [p for p in (Path(env["XDG_CACHE_HOME"]) / "clarity").iterdir() if "-ort" in p.name]
    # `git add -A` (what a hurried commit does) picks up nothing either
    git(repo, "add", "-A")
    assert git(repo, "diff", "--cached", "--name-only") == ""
