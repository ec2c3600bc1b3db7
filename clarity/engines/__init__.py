"""Which engine a store uses: the one place an engine is chosen.

`engine_is_exclusive(settings)` is cheap (imports no engine library): True when only one process may open
the store at a time, so the coordination layer must take turns through the lease; False for a shared
server (every session talks to it directly, no lease). `open_engine(settings)` builds the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clarity.config import Settings
    from clarity.engines.base import Engine


def engine_is_exclusive(settings: Settings) -> bool:
    return True


def open_engine(settings: Settings) -> Engine:
    from clarity.engines.qdrant_local import QdrantLocalEngine

    return QdrantLocalEngine(settings.qdrant_path)
