"""The Engine protocol: the few storage calls the memory service needs from a Qdrant engine.

Filters are plain dicts, so engines stay interchangeable: `{"memory_type": [..], "tags": [..],
"content_hash": "..."}`; a list matches any of its values, keys are combined with AND.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Filter = dict[str, Any]


class EngineLocked(Exception):
    """The store is open in another process (the engine's own storage lock refused us). Transient for
    the coordination layer: the lease says whose turn it is, this is the engine's own fence."""


@dataclass
class Point:
    """One stored point: id, payload, and (when asked for) its vector or its search score."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """What a storage engine offers. Implementations are not required to be thread-safe for
    concurrent callers unless they say so; `QdrantLocalEngine` is (one lock around every call)."""

    name: str

    def ensure_collection(self, dim: int) -> None: ...

    def upsert(self, points: Sequence[Point]) -> None: ...

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]: ...

    def scroll(self, flt: Filter | None = None, with_vectors: bool = False) -> list[Point]: ...

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Point]: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def count(self, flt: Filter | None = None) -> int: ...

    def storage_bytes(self) -> int: ...

    def close(self) -> None: ...
