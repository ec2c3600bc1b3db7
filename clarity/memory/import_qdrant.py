"""Read memories out of any qdrant-client local store (e.g. mcp-server-qdrant's QDRANT_LOCAL_PATH).

`read_store(path, collection)` yields memories in Clarity's export format (plain dicts the service's
`import` operation takes); the text is re-embedded by the importing service, so the source's vectors
and model do not matter. What maps onto a memory:

- Clarity's own payload (`content`, `memory_type`, `tags`, ...): kept as is, timestamps included.
- mcp-server-qdrant's payload (`document`, `metadata`): `content` = document, `metadata` = its
  metadata object; `memory_type` "note"; `context.source` names the store and collection.
- Any other payload with a text in `text`, `page_content` or `content`: that text, the rest of the
  payload under `metadata`.

Every memory is then checked as a store checks it (`clarity.memory.validate`: the store's request parsing
and content limit, timestamps in the form the engine indexes), so the service's import takes every one it
is sent. Points without such a text, with a text longer than `max_bytes`, that a store would refuse or that
cannot be read as a point (`BadPoint`) are skipped and counted by reason (`ImportStats.skipped`), the first
few named with why (`ImportStats.examples`, and a warning each). Ids are kept when they are UUIDs; integer
ids become a UUID derived from (collection, id), so importing the same store twice stores nothing new.

The store is read by `clarity.engines.qdrant_local`: never with qdrant-client, never running code from its
pickles, read-only (nothing is written, no lock taken). A file that is not wholly a qdrant-client store
(meta.json not a store's, a database sqlite cannot read, a row that is not a pickled point, a pickle that
names anything a store never holds) is one ClarityError naming it, raised before any memory is yielded:
every row is read once before the first batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clarity.engines.points import BadRecord
from clarity.engines.qdrant_local import BadPoint, open_store
from clarity.errors import ClarityError
from clarity.memory.validate import request, timestamp

log = logging.getLogger(__name__)

TEXT_KEYS = ("document", "text", "page_content")
CLARITY_KEYS = ("memory_type", "importance", "tags", "metadata", "context", "session", "created_at",
                "updated_at")


MAX_EXAMPLES = 5  # skipped points named (in `examples` and a warning each); the rest only counted


class ImportStats:
    def __init__(self) -> None:
        self.read = 0
        self.skipped: dict[str, int] = {}  # why -> how many
        self.examples: list[str] = []  # the first MAX_EXAMPLES skipped points: "point <id> of <collection>: why"

    def skip(self, why: str, point: str | None = None, detail: str | None = None) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        if point is not None and len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"point {point}: {detail or why}")
            log.warning("skipped %s", self.examples[-1])


def _memory_id(collection: str, pid: Any) -> str:
    try:
        return str(uuid.UUID(str(pid)))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qdrant:{collection}:{pid}"))


def _check(mem: dict[str, Any], max_bytes: int) -> None:
    """BadRecord unless a store would take `mem` (and its timestamps are ones the engine indexes)."""
    request(mem["id"], mem, max_bytes)
    for key in ("created_at", "updated_at"):
        if key in mem:
            timestamp(mem, key)


def to_memory(payload: dict[str, Any], pid: Any, collection: str, source: str,
              max_bytes: int, stats: ImportStats) -> dict[str, Any] | None:
    mid = _memory_id(collection, pid)
    point = f"{pid} of {collection}"
    if isinstance(payload.get("content"), str) and "memory_type" in payload:
        text: str = payload["content"]
        mem: dict[str, Any] = {"id": mid, "content": text, **{k: payload[k] for k in CLARITY_KEYS if k in payload}}
    else:
        key = next((k for k in (*TEXT_KEYS, "content") if isinstance(payload.get(k), str)), None)
        if key is None:
            stats.skip("no text field", point)
            return None
        text = payload[key]
        meta = payload.get("metadata") if key == "document" else {k: v for k, v in payload.items() if k != key}
        mem = {"id": mid, "content": text, "memory_type": "note",
               "metadata": meta if isinstance(meta, dict) else {},
               "context": {"source": f"{source}#{collection}"}}
    if not text.strip():
        stats.skip("empty text", point)
        return None
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        stats.skip("text longer than memory.max_content_bytes", point)
        return None
    try:
        _check(mem, max_bytes)
    except BadRecord as e:
        stats.skip(f"invalid {e.field}", point, e.message)
        return None
    return mem


def read_store(path: Path, collection: str | None, max_bytes: int, stats: ImportStats,
               batch: int = 256) -> Iterator[list[dict[str, Any]]]:
    """Batches of memories from the qdrant-client local store at `path` (see the module docstring)."""
    store = open_store(path)
    names = list(store.collections)
    if collection is None:
        if len(names) != 1:
            raise ClarityError(f"{path} holds the collections {names}: name one with --collection")
        collection = names[0]
    elif collection not in names:
        raise ClarityError(f"{path} has no collection {collection!r} (it has {names})")
    for _ in store.points(collection):  # every row read before anything is imported (raises ClarityError)
        pass
    out: list[dict[str, Any]] = []
    for item in store.points(collection):
        stats.read += 1
        if isinstance(item, BadPoint):
            stats.skip("unreadable point", f"{item.label} of {collection}", item.why)
            continue
        mem = to_memory(item.payload, item.id, collection, path.name, max_bytes, stats)
        if mem is not None:
            out.append(mem)
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out
