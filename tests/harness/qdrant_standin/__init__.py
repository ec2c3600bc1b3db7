"""A stand-in Qdrant server process for tests and scripts (see `app.py` for what it reproduces and what not).

`StandIn(folder, api_key=..., strict=...)` is a context manager: it starts the server on a free loopback
port and waits (bounded) until `/readyz` answers; `restart()` kills it (SIGKILL: no goodbye, as a crash)
and starts it again on the same port and folder; `set_delay(ms)` makes every request that slow;
`fail_next(n)` answers 503 to the next n requests. `url` is what CLARITY_QDRANT_URL takes.
When QDRANT_SERVER_URL is set (CI's real Qdrant service container), `server()` yields that server instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandIn:
    def __init__(self, folder: Path, *, api_key: str | None = None, strict: bool = False, delay_ms: int = 0,
                 port: int | None = None) -> None:
        self.folder = folder
        self.api_key = api_key
        self.strict = strict
        self.delay_ms = delay_ms
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "standin.log"

    def start(self, timeout_s: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "tests.harness.qdrant_standin", "--port", str(self.port),
               "--path", str(self.folder / "data"), "--delay-ms", str(self.delay_ms)]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        if self.strict:
            cmd.append("--strict")
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stand-in exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the stand-in did not answer /readyz within {timeout_s} s")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        """Kill the server (SIGKILL) and start it again on the same port and folder after `down_s`."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def _admin(self, path: str, body: dict[str, Any]) -> None:
        headers = {"api-key": self.api_key} if self.api_key else {}
        httpx.put(self.url + path, json=body, headers=headers, timeout=10.0).raise_for_status()

    def set_delay(self, ms: int) -> None:
        self._admin("/__standin/delay", {"ms": ms})

    def fail_next(self, count: int) -> None:
        self._admin("/__standin/fail", {"count": count})

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def server(folder: Path, **kwargs: Any) -> Iterator[tuple[str, str | None, StandIn | None]]:
    """(url, api_key, stand-in or None): the real server named by QDRANT_SERVER_URL (and
    QDRANT_SERVER_API_KEY) when set, else a stand-in started for the block."""
    real = os.environ.get("QDRANT_SERVER_URL")
    if real:
        yield real, os.environ.get("QDRANT_SERVER_API_KEY") or None, None
        return
    with StandIn(folder, **kwargs) as s:
        yield s.url, s.api_key, s
