"""The Engine protocol: the storage calls the memory service needs, each O(limit), never O(store).

Filters are plain dicts, so engines stay interchangeable: `{"memory_type": [..], "tags": [..],
"content_hash": "..."}`; a list matches any of its values, keys are combined with AND, None is ignored;
`{"created_at": {"gte": iso, "lte": iso}}` is a datetime range on the indexed `created_at`;
`{"superseded_by": {"is_empty": True}}` keeps points whose field is missing or empty (`False`: the others).

Every point gets a BM25 sparse vector (`clarity.encoders.sparse`) from its payload's `content` when it
is written (unless `Point.sparse` is given), so keyword and hybrid search see every memory.

Durability contract (what a returned `upsert`/`delete` means; the service acknowledges a write only
after the engine call returned):

- Process death: once `upsert` or `delete` returns, the change survives a SIGKILL of this process at
  any later instant, and the next process that opens the store sees it. (Qdrant Edge appends every
  update to its write-ahead log through a shared mmap before returning; the kernel keeps those pages
  when the process dies and the WAL is replayed on the next open. Tested with real SIGKILLs during
  write storms: tests/test_durability.py.)
- Power loss / kernel crash: a returned write is only on disk once `sync()` has returned after it.
  Qdrant Edge syncs nothing by itself; `EdgeEngine` calls `sync()` from a background thread at most
  `engine.flush_interval_s` seconds after a write (default 1 s), so a power cut can lose the writes
  of the last ~1 s (plus the flush in flight); everything older is on disk. With
  `engine.flush_interval_s = 0` every acknowledgement waits for a group commit (one flush covering
  every write that arrived meanwhile), and a power cut loses nothing acknowledged (at the cost of
  one flush per group; see docs/bench/edge_probe.md).
- A server engine (qdrant-client with a url) acknowledges what the server acknowledged (`wait=True`);
  its durability is the server's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Filter = dict[str, Any]
PREFETCH_MIN = 40
PREFETCH_FACTOR = 4


@dataclass
class Point:
    """One stored point: id, payload, and (when asked for) its vector or its search score."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None
    score: float | None = None
    sparse: tuple[list[int], list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchQuery:
    """One search (see `clarity.engines.hybrid` for what each mode and `min_similarity` mean).
    `fusion` and `rrf_k`: how a hybrid search merges its two branches, DBSF (the measured default) or
    RRF with constant `rrf_k` (the evaluation compares them; tests/eval/evaluate.py)."""

    dense: list[float]
    sparse: tuple[list[int], list[float]] | None
    limit: int
    mode: str = "hybrid"
    flt: dict[str, Any] | None = None
    min_similarity: float | None = None
    fusion: Literal["dbsf", "rrf"] = "dbsf"
    rrf_k: int = 60

    def prefetch_limit(self) -> int:
        """How many candidates each branch of a hybrid search fetches."""
        return max(PREFETCH_MIN, PREFETCH_FACTOR * self.limit)


class Engine(Protocol):
    """What a storage engine offers. Engines are safe for concurrent callers (each one serializes
    what its library cannot run concurrently). `exclusive` is True when only one process may open
    the store at a time (the coordination layer then takes turns through the lease).

    Cost: `search`, `newest`, `find`, `retrieve` are O(limit) plus what the index needs; `count` and
    `facet` use payload indexes (no payload is read); `page` is O(limit) per page; `storage_bytes`
    is cached (it may lag by a few seconds). Nothing scrolls the whole store at open."""

    name: str
    exclusive: bool

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (dense vector of `dim`, cosine; the sparse slot; payload indexes)
        if missing; raise ValueError if it exists with another dimension."""

    def upsert(self, points: Sequence[Point]) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def insert(self, points: Sequence[Point]) -> None:
        """Write the points whose id is not stored yet; a stored id is left as it is (even when another
        process wrote it a moment before: the engine decides, not a read before the write)."""

    def set_fields(self, point_id: str, fields: dict[str, Any], vector: list[float] | None = None,
                   sparse: tuple[list[int], list[float]] | None = None) -> bool:
        """Set only the payload keys `fields` of the point (other keys as they are at that moment, not
        as read before; `fields` holds `updated_at`); with `vector` / `sparse`, its dense / BM25 vector
        too. False when the point does not exist (nothing written)."""

    def mark_superseded(self, point_id: str, by: str) -> str | None:
        """Set `superseded_by = by` only if the point has none, atomically with that check; returns the
        point's `superseded_by` afterwards (`by`: this call set it) or None when there is no point."""

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]: ...

    def query(self, sq: SearchQuery) -> list[Point]:
        """Search by `sq` (see `clarity.engines.hybrid`): best first, `score` = the engine's ranking
        score, `extra["cosine"]` = the dense cosine with the query."""

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Point]: ...

    def newest(self, flt: Filter | None, offset: int, limit: int) -> list[Point]:
        """Points matching `flt`, ordered by `created_at` descending then id descending; the slice
        [offset, offset + limit). Cost O(offset + limit) (plus the points sharing the boundary
        timestamp)."""

    def find(self, flt: Filter, limit: int = 1) -> list[Point]:
        """Up to `limit` points matching `flt`, in no particular order (used for dedup by the
        indexed `content_hash`)."""

    def count(self, flt: Filter | None = None) -> int: ...

    def facet(self, key: str, limit: int = 1000) -> dict[str, int]:
        """Exact number of points per value of the indexed keyword field `key` (top `limit`)."""

    def page(self, cursor: str | None, limit: int,
             with_vectors: bool = False) -> tuple[list[Point], str | None]:
        """One page of every point in id order, from `cursor` (None: the start); returns the page
        and the cursor of the next one (None: done). Writes between pages may or may not show."""

    def storage_bytes(self) -> int: ...

    def sync(self) -> None:
        """Return once every write that returned before this call is on disk (survives power loss)."""

    def close(self) -> None: ...


def iter_all(engine: Engine, page_size: int = 512, with_vectors: bool = False) -> Iterator[list[Point]]:
    """Every point of `engine`, page by page (memory bounded by one page)."""
    cursor: str | None = None
    while True:
        batch, cursor = engine.page(cursor, page_size, with_vectors)
        if batch:
            yield batch
        if cursor is None:
            return
