"""Real `clarity serve` sessions over MCP, started together and closed together.

A `Session` owns its `SessionClient` inside one task (anyio cancel scopes must be left in the task that
entered them); a `SessionGroup` starts sessions into a task group and stops them. A session whose server
was killed closes quietly: its client's failure at exit is recorded, never raised. Every loop here is
bounded by a deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from clarity.session_client import SessionClient
from tests.harness.processes import own_pid, owner_pid


@dataclass
class Session:
    """One session: `await group.start(n)` gives ready ones; `call` forwards to the MCP client."""

    idx: int
    home: Path
    env: dict[str, str]
    errlog_path: Path | None = None
    read_timeout_s: float = 120.0
    client: SessionClient | None = None
    pid: int | None = None
    start_error: str | None = None
    exit_error: str | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    stopping: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, max_life_s: float = 3600.0) -> None:
        """Start the server, wait until told to stop (at most `max_life_s`), close it."""
        errlog: TextIO | None = self.errlog_path.open("a", encoding="utf-8") if self.errlog_path else None
        try:
            async with SessionClient(self.home, env=self.env, errlog=errlog,
                                     read_timeout_s=self.read_timeout_s) as s:
                self.client = s
                self.ready.set()
                with anyio.move_on_after(max_life_s):
                    await self.stopping.wait()
        except Exception as e:  # a killed server makes the client's start or exit fail
            text = f"{type(e).__name__}: {e}"
            if self.ready.is_set():
                self.exit_error = text
            else:
                self.start_error = text
        finally:
            if errlog is not None:
                errlog.close()
            self.ready.set()
            self.done.set()

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        if self.client is None:
            raise RuntimeError(f"session {self.idx} is not running: {self.start_error}")
        return await self.client.call(tool, args)

    async def status(self) -> dict[str, Any]:
        """coordination_status; also learns this session's server pid."""
        st: dict[str, Any] = await self.call("coordination_status")
        self.pid = own_pid(st)
        return st


class SessionGroup:
    """Sessions of one home, each running in its own task of `tg`."""

    def __init__(self, tg: Any, home: Path, env: dict[str, str] | None = None, logdir: Path | None = None,
                 marker: str | None = None, read_timeout_s: float = 120.0) -> None:
        self.tg = tg
        self.home = home
        self.env = dict(env or {})
        self.logdir = logdir
        self.marker = marker
        self.read_timeout_s = read_timeout_s
        self.sessions: list[Session] = []

    async def start(self, n: int, learn_pids: bool = True, timeout_s: float = 180.0) -> list[Session]:
        """Start `n` sessions at once; returns them once every one answered `initialize` (and, with
        `learn_pids`, coordination_status). Raises RuntimeError when one failed to start."""
        new: list[Session] = []
        for _ in range(n):
            i = len(self.sessions) + len(new)
            env = dict(self.env)
            if self.marker is not None:  # names the server so `processes.reap(marker)` finds it
                env["CLARITY_SESSION_ID"] = f"{self.marker}{i}"
            log = self.logdir / f"server-{i}.log" if self.logdir else None
            s = Session(i, self.home, env, log, self.read_timeout_s)
            self.tg.start_soon(s.run)
            new.append(s)
        self.sessions.extend(new)
        with anyio.fail_after(timeout_s):
            for s in new:
                await s.ready.wait()
        bad = [s.start_error for s in new if s.start_error]
        if bad:
            raise RuntimeError(f"{len(bad)} session(s) failed to start: {bad[0]}")
        if learn_pids:
            with anyio.fail_after(timeout_s):
                for s in new:
                    await s.status()
        return new

    async def stop(self, sessions: list[Session] | None = None, timeout_s: float = 60.0) -> None:
        """Ask sessions (default: all) to close and wait for them, at most `timeout_s`."""
        targets = self.sessions if sessions is None else sessions
        for s in targets:
            s.stopping.set()
        with anyio.move_on_after(timeout_s):
            for s in targets:
                await s.done.wait()


@asynccontextmanager
async def open_sessions(home: Path, n: int, env: dict[str, str] | None = None,
                        logdir: Path | None = None) -> AsyncIterator[list[SessionClient]]:
    """Start `n` real `clarity serve` sessions on `home` at the same time; yields their clients once all
    have answered `initialize`. A session whose server was killed is closed quietly at the end."""
    async with anyio.create_task_group() as tg:
        group = SessionGroup(tg, home, env, logdir)
        try:
            started = await group.start(n, learn_pids=False)
            yield [s.client for s in started if s.client is not None]
        finally:
            await group.stop()


async def pid_of(session: Any) -> int:
    """The pid of the server behind `session` (a SessionClient or a Session)."""
    return own_pid(await session.call("coordination_status"))


async def owner_session(sessions: list[Any]) -> tuple[int, Any]:
    """(index, session) of the session whose server owns the lease (AssertionError when none does)."""
    statuses = [await s.call("coordination_status") for s in sessions]
    owner = next((p for p in map(owner_pid, statuses) if p is not None), None)
    for i, st in enumerate(statuses):
        if owner is not None and own_pid(st) == owner:
            return i, sessions[i]
    raise AssertionError(f"no session owns the lease (owner pid {owner})")


async def all_memories(session: Any, tags: list[str] | None = None, page: int = 1000,
                       max_pages: int = 10_000) -> list[dict[str, Any]]:
    """Every memory (with content) carrying any of `tags` (all when None), paged through list_memories."""
    out: list[dict[str, Any]] = []
    for _ in range(max_pages):
        res = await session.call("list_memories", {"tags": tags, "limit": page, "offset": len(out),
                                                   "include_content": True})
        out.extend(res["memories"])
        if not res["memories"] or len(out) >= res["total"]:
            return out
    raise RuntimeError(f"list_memories did not end within {max_pages} pages")
