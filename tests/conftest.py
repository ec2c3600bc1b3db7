"""Shared fixtures: a fresh home per test and real `clarity serve` sessions driven over MCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from clarity.session_client import SessionClient

for _var in [v for v in os.environ if v.startswith("CLARITY_")]:
    del os.environ[_var]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@asynccontextmanager
async def open_sessions(home: Path, n: int, env: dict[str, str] | None = None) -> AsyncIterator[list[SessionClient]]:
    """Start `n` real `clarity serve` sessions on `home` at the same time; yields them once all have
    answered `initialize`. A session whose server was killed is closed quietly at the end."""
    sessions: list[Any] = [None] * n
    errors: list[BaseException] = []
    done = anyio.Event()
    ready = [anyio.Event() for _ in range(n)]

    async def run(i: int) -> None:
        try:
            async with SessionClient(home, env=env) as s:
                sessions[i] = s
                ready[i].set()
                await done.wait()
        except Exception as e:  # a killed server makes the client's exit fail
            if not ready[i].is_set():
                errors.append(e)
            ready[i].set()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(run, i)
        for ev in ready:
            await ev.wait()
        try:
            if errors:
                raise RuntimeError(f"{len(errors)} session(s) failed to start: {errors[0]!r}")
            yield sessions
        finally:
            done.set()


def run_async(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def cli(home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m clarity ARGS --home HOME` and return the finished process."""
    cmd = [sys.executable, "-m", "clarity", *args, "--home", str(home)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def status(home: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    return orjson.loads(cli(home, "status", "--json", env=env).stdout)  # type: ignore[no-any-return]


async def pid_of(session: SessionClient) -> int:
    st = await session.call("coordination_status")
    return int(st["this_process"]["pid"])


async def owner_session(sessions: list[SessionClient]) -> tuple[int, SessionClient]:
    """(index, session) of the session whose server owns the lease."""
    for i, s in enumerate(sessions):
        st = await s.call("coordination_status")
        if st["this_process"]["role"] == "owner":
            return i, s
    raise AssertionError("no session owns the lease")


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def wait_until(pred: Any, timeout: float = 20.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False


async def all_memories(session: SessionClient, tags: list[str] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await session.call("list_memories", {"tags": tags, "limit": 1000, "offset": offset,
                                                    "include_content": True})
        out.extend(page["memories"])
        offset += len(page["memories"])
        if not page["memories"] or offset >= page["total"]:
            return out
