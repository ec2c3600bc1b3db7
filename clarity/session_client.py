"""A small MCP client for one `clarity serve` session: starts the real server over stdio and calls its
tools. Used by `clarity demo`, the tests, and the stress and benchmark scripts.

`SessionClient.call` returns the tool's structured result, or raises `ToolCallError` when the tool
answered with an error.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from clarity.config import environment
from clarity.errors import ToolCallError

__all__ = ["SessionClient", "ToolCallError", "server_params"]


def server_params(home: str | Path, env: dict[str, str] | None = None,
                  cwd: str | Path | None = None) -> StdioServerParameters:
    """Parameters that start `python -m clarity serve --home HOME` with this interpreter, in an
    environment of this one's CLARITY_*, PATH, PYTHONPATH, HOME, TMP* and XDG_* variables (plus `env`)."""
    full_env = {k: v for k, v in environment().items()
                if k.startswith(("CLARITY_", "PATH", "PYTHONPATH", "HOME", "TMP", "XDG_"))}
    full_env.update(env or {})
    return StdioServerParameters(command=sys.executable, args=["-m", "clarity", "serve", "--home", str(home)],
                                 env=full_env, cwd=str(cwd) if cwd else None)


class SessionClient:
    """`async with SessionClient(home) as s: await s.call("store_memory", {...})`."""

    def __init__(self, home: str | Path, env: dict[str, str] | None = None, errlog: Any = None,
                 read_timeout_s: float = 120.0) -> None:
        self.params = server_params(home, env)
        self.errlog = errlog
        self.read_timeout_s = read_timeout_s
        self._stack: AsyncExitStack | None = None
        self.client: Client | None = None

    async def __aenter__(self) -> SessionClient:
        self._stack = AsyncExitStack()
        server: Any = self.params
        if self.errlog is not None:
            server = stdio_client(self.params, errlog=self.errlog)
        client = Client(server, read_timeout_seconds=self.read_timeout_s)
        self.client = await self._stack.enter_async_context(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def tools(self) -> list[str]:
        assert self.client is not None
        res = await self.client.list_tools()
        return sorted(t.name for t in res.tools)

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        assert self.client is not None
        res = await self.client.call_tool(tool, args or {})
        if res.is_error:
            text = " ".join(getattr(c, "text", "") for c in res.content)
            raise ToolCallError(tool, text)
        return res.structured_content
