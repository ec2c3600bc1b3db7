"""Which engine a store uses: the one place an engine is chosen.

`engine_is_exclusive(settings)` is cheap (imports no engine library): True when only one process may open
the store at a time, so the coordination layer must take turns through the lease; False for a shared
server (`engine.kind = "qdrant"` with a url: every session talks to it directly, no lease).
`open_engine(settings)` builds the engine (nothing is opened until `ensure_collection`); for a local
store it first checks the store's format and records this Clarity as its writer (`store_format`:
StoreTooNew, before anything is opened, when a newer Clarity wrote it in a newer format).
`store_files(settings)` is the folder holding the store's current files (what the hot standby keeps in
the page cache): the current Edge generation, or None for another engine or before the first open.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clarity.config import Settings
    from clarity.engines.base import Engine


def engine_is_exclusive(settings: Settings) -> bool:
    return not (settings.engine.kind == "qdrant" and settings.engine.url)


def open_engine(settings: Settings) -> Engine:
    e = settings.engine
    if engine_is_exclusive(settings):
        from clarity.engines.store_format import open_store

        open_store(settings)
    if e.kind == "qdrant":
        from clarity.engines.qdrant_client import QdrantClientEngine

        if e.url:
            from clarity.engines.server_info import collection_for

            return QdrantClientEngine(url=e.url, api_key=e.api_key, collection=collection_for(settings),
                                      call_budget_s=settings.coordination.call_deadline_s)
        return QdrantClientEngine(path=settings.qdrant_path, collection=e.collection)
    from clarity.engines.edge.engine import EdgeEngine
    from clarity.engines.edge.shard import edge_dir

    return EdgeEngine(edge_dir(settings.qdrant_path), e.flush_interval_s, e.index_threshold)


def store_files(settings: Settings) -> Path | None:
    if settings.engine.kind != "edge":
        return None  # a server's files are not here; a legacy local store is migrated at its first open
    from clarity.engines.edge.layout import current_dir
    from clarity.engines.edge.shard import edge_dir

    try:
        return current_dir(edge_dir(settings.qdrant_path))
    except (OSError, ValueError):
        return None
