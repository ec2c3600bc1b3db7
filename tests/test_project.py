"""The store follows the project: a subfolder and a linked worktree of one repository share one store.

Real git repositories (`git init`, `git worktree add`) in tmp; real `clarity serve` sessions started
WITHOUT --home in those folders, driven over MCP.
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

from clarity.config import load_settings, resolve_home
from clarity.errors import ConfigError
from clarity.project import choose_home, find_checkout
from clarity.session_client import SessionClient
from tests.conftest import run_async

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary to make repositories")

STORE = Path(".claude") / "alunai-clarity"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(main checkout, a subfolder two levels down, a linked worktree), paths resolved."""
    main = tmp_path / "repo"
    main.mkdir()
    git(main, "init", "-q")
    git(main, "commit", "-q", "--allow-empty", "-m", "init")
    sub = main / "src" / "pkg"
    sub.mkdir(parents=True)
    git(main, "worktree", "add", "-q", str(tmp_path / "repo-feature"))
    return main.resolve(), sub.resolve(), (tmp_path / "repo-feature").resolve()


def env_without_homes(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CLARITY_HOME", "CLAUDE_PROJECT_DIR",
                                                            "CLARITY_SHARE_WORKTREES")}
    return {**env, **extra}


def test_rules_in_a_real_repository(repo: tuple[Path, Path, Path], tmp_path: Path) -> None:
    main, sub, wt = repo
    env = env_without_homes()
    for where in (main, sub, wt):
        choice = choose_home(env=env, cwd=where)
        assert choice.path == main / STORE, where
    assert "linked worktree " + str(wt) in choose_home(env=env, cwd=wt).source
    assert str(sub) in choose_home(env=env, cwd=sub).source
    (wt / "nested").mkdir()
    co = find_checkout(wt / "nested")
    assert co is not None and co.top == wt and co.main == main and co.linked
    # CLAUDE_PROJECT_DIR wins over the current directory; CLARITY_HOME and --home win over both
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert choose_home(env={**env, "CLAUDE_PROJECT_DIR": str(wt)}, cwd=outside).path == main / STORE
    assert "CLAUDE_PROJECT_DIR" in choose_home(env={**env, "CLAUDE_PROJECT_DIR": str(wt)}, cwd=outside).source
    assert choose_home(env=env, cwd=outside).path == outside.resolve() / STORE
    assert "not in a git repository" in choose_home(env=env, cwd=outside).source
    assert choose_home(env={**env, "CLARITY_HOME": str(outside)}, cwd=sub).path == outside.resolve()
    assert choose_home(tmp_path / "x", env={**env, "CLARITY_HOME": str(outside)}, cwd=sub).source == "--home"
    # a symlink to a subfolder resolves to the same repository
    link = tmp_path / "link"
    link.symlink_to(sub)
    assert choose_home(env=env, cwd=link).path == main / STORE


def test_switch_keeps_worktrees_apart(repo: tuple[Path, Path, Path]) -> None:
    main, sub, wt = repo
    env = env_without_homes()
    off = {**env, "CLARITY_SHARE_WORKTREES": "0"}
    assert choose_home(env=off, cwd=wt).path == wt / STORE
    assert choose_home(env=off, cwd=sub).path == main / STORE  # subfolders always share
    assert "CLARITY_SHARE_WORKTREES" in choose_home(env=off, cwd=wt).source
    # the same switch in the main checkout's config.json; the variable wins over it
    load_settings(main / STORE)
    cfg = main / STORE / "config.json"
    data = orjson.loads(cfg.read_bytes())
    assert data["project"] == {"share_worktrees": True}  # written with the defaults, so it can be found
    data["project"]["share_worktrees"] = False
    cfg.write_bytes(orjson.dumps(data))
    assert choose_home(env=env, cwd=wt).path == wt / STORE
    assert str(cfg) in choose_home(env=env, cwd=wt).source
    assert choose_home(env={**env, "CLARITY_SHARE_WORKTREES": "yes"}, cwd=wt).path == main / STORE


def test_only_the_given_environment_counts(repo: tuple[Path, Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """choose_home reads the variables it is handed, never the process environment (clarity.config is
    the one reader: resolve_home hands it the process environment)."""
    main, sub, wt = repo
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("CLARITY_HOME", str(elsewhere))
    monkeypatch.setenv("CLARITY_SHARE_WORKTREES", "0")
    assert choose_home(env={}, cwd=wt).path == main / STORE
    assert choose_home(env={"CLARITY_HOME": ""}, cwd=sub).path == main / STORE  # empty counts as unset
    assert resolve_home() == elsewhere.resolve()
    with pytest.raises(TypeError):
        choose_home(cwd=wt)  # type: ignore[call-arg]  # no environment: the caller must say which


def test_malformed_switch_is_a_clear_error(repo: tuple[Path, Path, Path]) -> None:
    main, _sub, wt = repo
    env = env_without_homes()
    with pytest.raises(ConfigError, match="CLARITY_SHARE_WORKTREES"):
        choose_home(env={**env, "CLARITY_SHARE_WORKTREES": "maybe"}, cwd=wt)
    (main / STORE).mkdir(parents=True)
    (main / STORE / "config.json").write_text('{"project": {"share_worktrees": "no"}}')
    with pytest.raises(ConfigError, match="share_worktrees"):
        choose_home(env=env, cwd=wt)
    (main / STORE / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        choose_home(env=env, cwd=wt)
    proc = subprocess.run([sys.executable, "-m", "clarity", "status"], cwd=wt, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "config.json" in proc.stderr
    assert not (wt / ".claude").exists()  # nothing was created


def session_in(folder: Path, env: dict[str, str]) -> SessionClient:
    s = SessionClient(folder)  # the home argument is replaced: these sessions get no --home
    s.params = StdioServerParameters(command=sys.executable, args=["-m", "clarity", "serve"], env=env,
                                     cwd=str(folder))
    return s


def test_sessions_in_a_subfolder_and_a_linked_worktree_share_one_store(repo: tuple[Path, Path, Path]) -> None:
    main, sub, wt = repo
    env = env_without_homes()

    async def scenario() -> None:
        async with session_in(sub, env) as a, session_in(wt, env) as b:
            st_a, st_b = await a.call("coordination_status"), await b.call("coordination_status")
            assert st_a["home"] == st_b["home"] == str(main / STORE)
            assert "linked worktree" in st_b["home_source"]
            stored = await a.call("store_memory", {"content": "The payments service retries ERR_PAY_409 "
                                                              "three times", "memory_type": "fact"})
            found = await b.call("retrieve_memory", {"query": "ERR_PAY_409 retries"})
            assert [m["id"] for m in found["memories"]][:1] == [stored["id"]]
            stored_b = await b.call("store_memory", {"content": "Worktree note: feature flag X is on"})
            listed = await a.call("list_memories", {})
            assert {stored["id"], stored_b["id"]} <= {m["id"] for m in listed["memories"]}

    run_async(scenario)
    assert not (sub / ".claude").exists() and not (wt / ".claude").exists()
    # a terminal command in the subfolder, without --home, sees the same store and says why
    proc = subprocess.run([sys.executable, "-m", "clarity", "status"], cwd=sub, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert f"home {main / STORE}" in proc.stdout
    assert f"store chosen by: git main checkout {main} of project directory {sub}" in proc.stdout


def test_with_the_switch_off_a_worktree_session_has_its_own_store(repo: tuple[Path, Path, Path]) -> None:
    main, sub, wt = repo
    env = env_without_homes(CLARITY_SHARE_WORKTREES="0")

    async def scenario() -> None:
        async with session_in(sub, env) as a, session_in(wt, env) as b:
            await a.call("store_memory", {"content": "only in the main checkout's store"})
            st_b = await b.call("coordination_status")
            assert st_b["home"] == str(wt / STORE)
            assert (await b.call("list_memories", {}))["total"] == 0

    run_async(scenario)


def test_a_removed_current_directory_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(ConfigError, match="current directory no longer exists"):
        choose_home(env={})
    assert choose_home(tmp_path / "h", env={}).path == (tmp_path / "h").resolve()  # --home needs no cwd
