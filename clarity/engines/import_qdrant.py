"""Read memories out of any qdrant-client local store (e.g. mcp-server-qdrant's QDRANT_LOCAL_PATH).

`read_store(path, collection)` yields memories in Clarity's export format (plain dicts the service's
`import` operation takes); the text is re-embedded by the importing service, so the source's vectors
and model do not matter. What maps onto a memory:

- Clarity's own payload (`content`, `memory_type`, `tags`, ...): kept as is, timestamps included.
- mcp-server-qdrant's payload (`document`, `metadata`): `content` = document, `metadata` = its
  metadata object; `memory_type` "note"; `context.source` names the store and collection.
- Any other payload with a text in `text`, `page_content` or `content`: that text, the rest of the
  payload under `metadata`.

Points without such a text, or with a text longer than `max_bytes`, are skipped and counted. Ids are
kept when they are UUIDs; integer ids become a UUID derived from (collection, id), so importing the
same store twice stores nothing new. The source is opened read-only in spirit (nothing is written),
but qdrant-client takes its lock: a store in use by a running server cannot be read (clear error).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clarity.errors import ClarityError

TEXT_KEYS = ("document", "text", "page_content")
CLARITY_KEYS = ("memory_type", "importance", "tags", "metadata", "context", "session", "created_at",
                "updated_at")


class ImportStats:
    def __init__(self) -> None:
        self.read = 0
        self.skipped: dict[str, int] = {}

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def _memory_id(collection: str, pid: Any) -> str:
    try:
        return str(uuid.UUID(str(pid)))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qdrant:{collection}:{pid}"))


def to_memory(payload: dict[str, Any], pid: Any, collection: str, source: str,
              max_bytes: int, stats: ImportStats) -> dict[str, Any] | None:
    mid = _memory_id(collection, pid)
    if isinstance(payload.get("content"), str) and "memory_type" in payload:
        text: str = payload["content"]
        mem: dict[str, Any] = {"id": mid, "content": text, **{k: payload[k] for k in CLARITY_KEYS if k in payload}}
    else:
        key = next((k for k in (*TEXT_KEYS, "content") if isinstance(payload.get(k), str)), None)
        if key is None:
            stats.skip("no text field")
            return None
        text = payload[key]
        meta = payload.get("metadata") if key == "document" else {k: v for k, v in payload.items() if k != key}
        mem = {"id": mid, "content": text, "memory_type": "note",
               "metadata": meta if isinstance(meta, dict) else {},
               "context": {"source": f"{source}#{collection}"}}
    if not text.strip():
        stats.skip("empty text")
        return None
    if len(text.encode("utf-8")) > max_bytes:
        stats.skip("text longer than memory.max_content_bytes")
        return None
    return mem


def read_store(path: Path, collection: str | None, max_bytes: int, stats: ImportStats,
               batch: int = 256) -> Iterator[list[dict[str, Any]]]:
    """Batches of memories from the qdrant-client local store at `path`."""
    from qdrant_client import QdrantClient

    if not (path / "meta.json").is_file():
        raise ClarityError(f"{path} is not a qdrant-client local store (no meta.json)")
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as e:
        raise ClarityError(f"cannot open {path}: {e}") from e
    try:
        names = [c.name for c in client.get_collections().collections]
        if collection is None:
            if len(names) != 1:
                raise ClarityError(f"{path} holds the collections {names}: name one with --collection")
            collection = names[0]
        elif collection not in names:
            raise ClarityError(f"{path} has no collection {collection!r} (it has {names})")
        offset: Any = None
        while True:
            recs, offset = client.scroll(collection, limit=batch, offset=offset, with_payload=True,
                                         with_vectors=False)
            out = []
            for r in recs:
                stats.read += 1
                mem = to_memory(dict(r.payload or {}), r.id, collection, path.name, max_bytes, stats)
                if mem is not None:
                    out.append(mem)
            if out:
                yield out
            if offset is None:
                return
    finally:
        client.close()
