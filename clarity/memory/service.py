"""MemoryService: the memory operations over one Engine and one embedding model.

Operations are domain-level (text in, memories out) and listed in one table, `OPERATIONS`: each names
its request model, whether it writes to the store, and its handler. Their arguments are JSON (parsed
here, once) or the operation's request model parsed in this same process (taken as is, not parsed
again); a handler answers its result model (`clarity.memory.results`; payloads and results are built in
`clarity.memory.records`) and `execute` sends it as plain JSON (`records.dump`), so the same call can
run here or be forwarded to another process. A store answers a StoreResult (id, stored, duplicate_of,
created_at, similar_to), an update its id, fields and `updated_at`: never the memory (`get` returns it).

Guarantees: an operation that raises changed nothing; `store` returns only once the memory is in the
engine's storage; storing with an id that is already stored with the same content returns that memory
(a retry is idempotent); the same content with the same type is stored once (`duplicate_of`). Every
store, single or batched, takes the one store path (`clarity.memory.batch_store`). One lock serializes
operations.

Cost: every operation is O(its limit) in the engine (list by an order-by scroll, stats by count and
facets, dedup by the indexed `content_hash`), except `export`, `import` and `backup`, which are O(what
they move) and page through the store with memory bounded by a page (export builds its answer).
Nothing scrolls the store when it opens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from clarity.config import Settings
from clarity.encoders.dense import Embedder
from clarity.encoders.sparse import encode_query
from clarity.engines.base import Engine, Point, SearchQuery, iter_all
from clarity.errors import ClarityError, InvalidArgument, NotFound
from clarity.memory import batch_store, records
from clarity.memory import model as m
from clarity.memory.arguments import parse, parse_args
from clarity.memory.indexed_text import dense_text, sparse_vector
from clarity.memory.ranking import CANDIDATE_FACTOR, rerank
from clarity.memory.records import now_iso as now_iso  # re-exported: part of this module's interface
from clarity.memory.results import (
    BackupResult,
    DeleteResult,
    ExportResult,
    ImportResult,
    ListResult,
    Memory,
    RetrieveResult,
    StatsResult,
    StoreResult,
    UpdateResult,
)
from clarity.memory.timefilter import created_range

log = logging.getLogger(__name__)

RQ = TypeVar("RQ", bound=m.Request)
RS = TypeVar("RS", bound=BaseModel)


@dataclass(frozen=True)
class Operation(Generic[RQ, RS]):
    """One operation of the service: its request model, whether it writes to the store, its handler
    (called with the parsed request, the service lock held; answers its result model)."""

    request: type[RQ]
    writes: bool
    handler: Callable[[MemoryService, RQ], RS]


class MemoryService:
    OPS: ClassVar[tuple[str, ...]]  # the operations' names: OPERATIONS' keys (set below the table)

    def __init__(self, settings: Settings, engine_factory: Callable[[], Engine], embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._lock = threading.RLock()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def engine_open(self) -> bool:
        return self._engine is not None

    def _eng(self) -> Engine:
        if self._engine is None:
            engine = self._engine_factory()
            engine.ensure_collection(self.embedder.dim)
            self._engine = engine
        return self._engine

    def open_engine(self) -> None:
        """Open the engine now (a new owner does it before the first call arrives). Idempotent."""
        with self._lock:
            self._eng()

    def close(self) -> None:
        """Close the engine (the model stays loaded). Safe to call twice."""
        with self._lock:
            if self._engine is not None:
                try:
                    self._engine.close()
                finally:
                    self._engine = None

    # ---- calls -------------------------------------------------------------------------------

    def execute(self, op: str, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        """Run operation `op` with JSON `args` (parsed here, once) or with the operation's request model
        already parsed in this process (not parsed again); returns a JSON-able dict or raises ClarityError."""
        operation = OPERATIONS.get(op) if isinstance(op, str) else None
        if operation is None:
            raise InvalidArgument(f"unknown operation {op!r}")
        req = parse_args(operation.request, args)
        with self._lock:
            return records.dump(operation.handler(self, req))

    def store_batch(self, batch: Sequence[dict[str, Any] | m.Request]) -> list[dict[str, Any] | ClarityError]:
        """Many stores at once, each as if stored on its own in turn: see `clarity.memory.batch_store`."""
        with self._lock:
            answers = self._store(batch)
        return [a if isinstance(a, ClarityError) else records.dump(a) for a in answers]

    # ---- helpers -----------------------------------------------------------------------------

    def _store(self, batch: Sequence[m.Args]) -> list[StoreResult | ClarityError]:
        return batch_store.store_batch(self._eng, self.embedder, self.settings.memory, batch)

    def _get_point(self, memory_id: str, with_vectors: bool = False) -> Point:
        found = self._eng().retrieve([memory_id], with_vectors=with_vectors)
        if not found:
            raise NotFound(f"no memory with id {memory_id}")
        return found[0]

    @staticmethod
    def _filter(req: m.RetrieveRequest | m.ListRequest) -> dict[str, Any]:
        flt: dict[str, Any] = {"memory_type": req.types or None, "tags": req.tags or None,
                               "session": req.sessions or None, "origin": req.origins or None}
        if not req.include_superseded:
            flt["superseded_by"] = {"is_empty": True}
        if req.flagged is not None:
            flt["flagged"] = {"is_empty": not req.flagged}
        return flt

    # ---- operations (the handlers of OPERATIONS) ---------------------------------------------

    def op_store(self, req: m.StoreRequest) -> StoreResult:
        """A batch of one (the one store path); raises the item's ClarityError."""
        answer = self._store([req])[0]
        if isinstance(answer, ClarityError):
            raise answer
        return answer

    def op_retrieve(self, req: m.RetrieveRequest) -> RetrieveResult:
        m.check_content(req.query, self.settings.memory.max_content_bytes, field="query")
        threshold = self.settings.memory.min_similarity if req.min_similarity is None else req.min_similarity
        flt = self._filter(req)
        flt["created_at"] = created_range(req.since, req.until)
        mem = self.settings.memory
        rw = mem.recency_weight if req.recency_weight is None else req.recency_weight
        iw = mem.importance_weight if req.importance_weight is None else req.importance_weight
        # a few more than asked: the engine breaks score ties in no fixed order, the engines here sort
        # by (score, id) and the cut below makes the same query on the same store answer the same
        fetch = min(100, req.limit * CANDIDATE_FACTOR) if rw > 0 or iw > 0 else min(100, req.limit + 10)
        sq = SearchQuery(dense=self.embedder.embed_one(req.query), sparse=encode_query(req.query),
                         limit=fetch, mode=req.mode, flt=flt, min_similarity=threshold)
        hits = rerank(self._eng().query(sq), req.limit, rw, iw, mem.recency_half_life_days)
        return records.retrieved(req, threshold, hits)

    def op_list(self, req: m.ListRequest) -> ListResult:
        flt = self._filter(req)
        page = self._eng().newest(flt, req.offset, req.limit)
        return records.listed(req, self._eng().count(flt), page)

    def op_get(self, req: m.GetRequest) -> Memory:
        return records.memory(self._get_point(req.memory_id))

    def op_update(self, req: m.UpdateRequest) -> UpdateResult:
        changes = req.updates.model_dump(exclude_none=True)
        if not changes:
            raise InvalidArgument("updates must name at least one of: content, memory_type, importance, "
                                  "tags, metadata, context")
        if "content" in changes:
            m.check_content(changes["content"], self.settings.memory.max_content_bytes)
        point = self._get_point(req.memory_id, with_vectors=True)
        new_content = "content" in changes and changes["content"] != point.payload.get("content")
        ts = now_iso()
        payload = records.updated_payload(point.payload, changes, ts,
                                          m.content_hash(changes["content"]) if new_content else None)
        reembed = dense_text(payload) != dense_text(point.payload)  # content, or what is indexed with it
        vector = self.embedder.embed_one(dense_text(payload)) if reembed else None
        # only the keys this update changes: another session's update of other fields is kept
        fields = {k: v for k, v in payload.items() if k not in point.payload or point.payload[k] != v}
        if not self._eng().set_fields(point.id, fields, vector, sparse_vector(payload)):
            raise NotFound(f"no memory with id {req.memory_id} (deleted meanwhile)")
        return records.updated(point.id, changes, reembed, ts)

    def op_review(self, req: m.ReviewRequest) -> UpdateResult:
        """A person's review of a flagged memory: the flag is kept as `flag_reviewed` and the memory is shown
        like any other (the CLI and the web page offer it; no MCP tool does). InvalidArgument when the
        memory is not flagged; a later change of its text judges it again."""
        point = self._get_point(req.memory_id)
        ts = now_iso()
        fields = records.reviewed(point.payload, ts)
        if fields is None:
            raise InvalidArgument(f"memory {req.memory_id} is not flagged: nothing to review")
        if not self._eng().set_fields(point.id, fields):
            raise NotFound(f"no memory with id {req.memory_id} (deleted meanwhile)")
        return records.updated(point.id, ["flagged"], False, ts)

    def op_delete(self, req: m.DeleteRequest) -> DeleteResult:
        ids = list(dict.fromkeys(req.memory_ids))
        found = {p.id for p in self._eng().retrieve(ids)}
        if found:
            self._eng().delete([i for i in ids if i in found])
        return records.deleted(ids, found)

    def op_stats(self, req: m.StatsRequest) -> StatsResult:
        eng = self._eng()
        state = getattr(eng, "index_state", None)
        return records.stats(total=eng.count(), by_type=eng.facet("memory_type"), engine=eng.name,
                             model=self.embedder.model_name, dims=self.embedder.dim,
                             storage_bytes=eng.storage_bytes(), home=self.settings.home,
                             index_state=state() if state is not None else {})

    def op_export(self, req: m.ExportRequest) -> ExportResult:
        points = [p for page in iter_all(self._eng(), with_vectors=req.with_vectors) for p in page]
        return records.exported(self.embedder.model_name, points, req.with_vectors)

    def op_import(self, req: m.ImportRequest) -> ImportResult:
        """Store exported memories, keeping their ids and timestamps; re-embeds (models may differ)."""
        parsed = [(item, parse(m.StoreRequest, {k: item[k] for k in records.IMPORTED_FIELDS if k in item}))
                  for item in req.memories]
        for _item, r in parsed:
            m.check_content(r.content, self.settings.memory.max_content_bytes)
        existing = {p.id for p in self._eng().retrieve([r.id for _i, r in parsed])} if parsed else set()
        fresh = [(item, r) for item, r in parsed if r.id not in existing]
        for start in range(0, len(fresh), 256):
            chunk = fresh[start:start + 256]
            payloads = [records.imported_payload(item, r, req.source) for item, r in chunk]
            vectors = self.embedder.embed([dense_text(p) for p in payloads])
            self._eng().upsert([Point(id=r.id, payload=p, vector=vector, sparse=sparse_vector(p))
                                for (_item, r), p, vector in zip(chunk, payloads, vectors, strict=True)])
        return records.imported(len(fresh), len(parsed) - len(fresh))

    def op_backup(self, req: m.BackupRequest) -> BackupResult:
        """Write every memory with its vector to a JSONL file in `<home>/backups/` (see
        `clarity.engines.backup`); runs in the owner while sessions keep working (writes that arrive
        meanwhile wait for the service lock, so the file is one consistent state)."""
        from clarity.engines.backup import write_backup

        path, count = write_backup(self._eng(), self.settings.backups_dir, self.embedder.model_name,
                                   self.embedder.dim)
        return records.backed_up(path, count)


OPERATIONS: Mapping[str, Operation[Any, Any]] = MappingProxyType({
    "store": Operation(m.StoreRequest, True, MemoryService.op_store),
    "retrieve": Operation(m.RetrieveRequest, False, MemoryService.op_retrieve),
    "list": Operation(m.ListRequest, False, MemoryService.op_list),
    "get": Operation(m.GetRequest, False, MemoryService.op_get),
    "update": Operation(m.UpdateRequest, True, MemoryService.op_update),
    "delete": Operation(m.DeleteRequest, True, MemoryService.op_delete),
    "review": Operation(m.ReviewRequest, True, MemoryService.op_review),
    "stats": Operation(m.StatsRequest, False, MemoryService.op_stats),
    "export": Operation(m.ExportRequest, False, MemoryService.op_export),
    "import": Operation(m.ImportRequest, True, MemoryService.op_import),
    "backup": Operation(m.BackupRequest, False, MemoryService.op_backup),  # writes a file, not the store
})
MemoryService.OPS = tuple(OPERATIONS)


def build_service(settings: Settings,
                  exclusive: Callable[[], AbstractContextManager[None]] | None = None,
                  embedder: Embedder | None = None) -> MemoryService:
    """The service over the configured engine and the configured embedding model (nothing is loaded
    until the first operation needs it). `exclusive()`, given by the lease owner, holds the maintenance
    (exclusive) side of the coordination lock for a block: the engine's one-time migration runs in it."""
    from clarity.engines import open_engine
    from clarity.engines.edge.migrate import migrate_if_needed

    if embedder is None:  # the hot standby passes the model it has already loaded
        embedder = Embedder(settings.embedding.model, settings.cache_dir, settings.embedding.batch_size,
                            settings.embedding.precision)

    def factory() -> Engine:
        migrate_if_needed(settings, embedder.dim, exclusive or nullcontext)
        return open_engine(settings)

    return MemoryService(settings, factory, embedder)
