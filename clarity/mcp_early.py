"""Embedding a call's text as soon as its line arrives.

A `store_memory` or `retrieve_memory` call spends about half a millisecond in the MCP layer (parsing the
JSON-RPC line, dispatching, checking the arguments) before its text reaches the model, which then runs for
one to three milliseconds. `EarlyEmbedding` is handed each raw line the stdio transport reads
(`clarity.mcp_stdio`); for such a call it computes the text the model will be given (the query; for a store,
`clarity.memory.indexed_text.dense_text` of the content and context) and starts embedding it on a
background thread (`Embedder.start_early`), so the two overlap on a machine with a second core.

It only starts work, never answers: the call runs exactly as it would without it and takes the early
vector only when its text is the same (a store whose content holds `<private>` text embeds the stripped
content, which this does not guess: it skips those). It does so only in a process whose model will embed
the call (the owner of the store with its model loaded, or any process over a shared server engine), for
lines up to `MAX_LINE` bytes; anything it cannot read is left alone. `CLARITY_NO_EARLY_EMBEDDING=1` turns
it off (to measure what it gains: `scripts/bench.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from clarity.config import early_embedding
from clarity.memory.indexed_text import dense_text

MAX_LINE = 64 * 1024
_TOOLS = (b'"store_memory"', b'"retrieve_memory"')


def early_text(line: bytes) -> str | None:
    """The text a `tools/call` line of store_memory or retrieve_memory will embed, else None."""
    if len(line) > MAX_LINE or b'"tools/call"' not in line or not any(t in line for t in _TOOLS):
        return None
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    params = msg.get("params") if isinstance(msg, dict) and msg.get("method") == "tools/call" else None
    args = params.get("arguments") if isinstance(params, dict) else None
    if not isinstance(params, dict) or not isinstance(args, dict):
        return None
    name = params.get("name")
    if name == "retrieve_memory":
        query = args.get("query")
        return query if isinstance(query, str) and query.strip() else None
    if name == "store_memory":
        content, context = args.get("content"), args.get("context")
        if not isinstance(content, str) or not content.strip() or "<private>" in content.lower():
            return None
        return dense_text({"content": content, "context": context if isinstance(context, dict) else None})
    return None


class EarlyEmbedding:
    """`hook(line)` for the stdio transport; `embedder()` gives the model that will embed this process's
    calls, or None (not the owner, model not loaded yet)."""

    def __init__(self, embedder: Callable[[], Any]) -> None:
        self.embedder = embedder

    def __call__(self, line: bytes) -> None:
        text = early_text(line)
        if text is None:
            return
        emb = self.embedder()
        if emb is not None:
            emb.start_early(text)


def early_hook(embedder: Callable[[], Any]) -> EarlyEmbedding | None:
    """The line hook of `clarity serve` (None when `CLARITY_NO_EARLY_EMBEDDING` is set)."""
    return EarlyEmbedding(embedder) if early_embedding() else None
