"""The long-running commands: `serve` (the stdio MCP server an MCP client starts) and `demo` (two real
`clarity serve` sessions share a store; the owner is killed, nothing is lost).

`serve`'s stdout is its MCP channel: it prints nothing there itself, logs go to stderr and the log
file. On SIGTERM/SIGINT or the end of stdin it finishes in-flight work, releases the lease and leaves
with exit 0. The MCP server, anyio and the coordinator are imported only when `serve` runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from typing import Any

from clarity import __version__
from clarity.config import Settings

ADD_TO_CLAUDE = "claude mcp add clarity -- clarity serve"


def _limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates (one per connected peer, on the owner) its own malloc
    arena; an owner serving 8 sessions at 10k memories held ~250 MiB more than one alone. Two are
    plenty: operations run one at a time anyway."""
    from clarity.platform.memory import limit_arenas

    limit_arenas(n)


def cmd_serve(settings: Settings, _a: argparse.Namespace) -> int:
    import anyio

    from clarity.coordination.coordinator import Coordinator
    from clarity.mcp_server import build_server
    from clarity.mcp_stdio import serve_stdio

    _limit_malloc_arenas()
    coordinator = Coordinator(settings, warm_model=True, standby=True)
    server = build_server(settings, coordinator)
    log = logging.getLogger("clarity.serve")

    closing = False  # set once, by whichever of the paths below leaves first

    def leave(reason: str) -> None:
        """Close once and exit. A client ends a session with SIGINT then SIGTERM a few ms apart, often
        while stdin's end already started a close: a second signal must not start a second close inside
        the first (that nested close waited for the first one's lock forever, holding the lease)."""
        nonlocal closing
        if closing:
            return  # a close is under way in this (main) thread: it exits when done
        closing = True
        log.info("%s: finishing in-flight work and releasing the lease", reason)
        coordinator.close()
        logging.shutdown()
        os._exit(0)

    def stop(signum: int, _frame: Any) -> None:
        leave(f"received signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("clarity %s serving on stdio, home %s, mode %s", __version__, settings.home,
             settings.coordination.mode)
    try:
        anyio.run(serve_stdio, server)
    finally:
        leave("stdin closed")  # exits the process: the stdin reader thread may still block on read
    return 0


def cmd_demo(_settings: Settings | None, a: argparse.Namespace) -> int:
    from clarity.demo import run_demo

    return run_demo(a.home, as_json=a.json)
