"""`clarity ui`: the page's web server, on 127.0.0.1 only.

Guarantees:
- It listens on 127.0.0.1 and nowhere else, on the port asked for or a free one the kernel picks (the
  socket is bound before the URL is printed, so the URL's port is the one served).
- The first line on stdout is the URL with the token (then stdout says nothing more; uvicorn logs
  warnings only, on stderr). With `open_browser` the default browser is pointed at it.
- It stops on SIGINT/SIGTERM: open event streams end within a second (`GRACE_S` at most), then `serve` returns (SIGTERM)
  or raises KeyboardInterrupt (SIGINT), and the caller closes the coordinator (so a page that owned the
  store lets go of it as any session does). uvicorn re-raises the signal it caught once it has stopped;
  the SIGTERM handler here turns that into a normal return instead of the default death.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import webbrowser
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from clarity.config import Settings
from clarity.ui.backend import Backend
from clarity.ui.routes import routes
from clarity.ui.security import Guard, Secrets

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
GRACE_S = 2


def bind(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:`port` (0: a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def build(backend: Backend, keys: Secrets, port: int, stopping: threading.Event) -> Guard:
    """The whole application: the routes behind the guard."""
    return Guard(Starlette(routes=routes(backend, keys, stopping)), keys, port)


class _Server(uvicorn.Server):
    """uvicorn's server that also tells the event streams to end when a signal asks it to stop (else
    the graceful shutdown would wait for them, then cancel them with an error in the log)."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)


def serve(settings: Settings, backend: Backend, *, port: int = 0, open_browser: bool = False) -> None:
    """Serve the page until interrupted; prints the URL first."""
    sock = bind(port)
    port = sock.getsockname()[1]
    keys = Secrets.new()
    stopping = threading.Event()
    app = build(backend, keys, port, stopping)
    sys.stdout.write(app.url + "\n")
    sys.stdout.flush()
    log.info("ui: serving %s on %s:%d", settings.home, HOST, port)
    if open_browser:
        webbrowser.open(app.url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False, server_header=False,
                            lifespan="off", timeout_graceful_shutdown=GRACE_S, log_config=None)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        _Server(config, stopping).run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()


class _Stopped(Exception):
    """SIGTERM arrived: stop serving, return normally."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped()
