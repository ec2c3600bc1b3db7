"""MemoryService: validation, ids, payloads, embedding and dedup over one Engine.

Operations are domain-level (text in, memories out). Their arguments are JSON (parsed here, once) or
the operation's request model parsed in this same process (taken as is, not parsed again); their
results are plain JSON values, so the same call can run here or be forwarded to another process. A
store answers `store_result` (id, stored, duplicate_of, created_at, similar_to), an update its id,
fields and `updated_at`: never the memory (`get` returns it). Guarantees: an operation
that raises changed nothing; `store` returns only once the memory is in the engine's storage; storing
with an id that is already stored with the same content returns that memory (a retry is idempotent);
the same content with the same type is stored once (`duplicate_of`). One lock serializes operations.

Cost: every operation is O(its limit) in the engine (list by an order-by scroll, stats by count and
facets, dedup by the indexed `content_hash`), except `export`, `import` and `backup`, which are O(what
they move) and page through the store with memory bounded by a page (export builds its answer).
Nothing scrolls the store when it opens.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

from clarity.config import Settings
from clarity.encoders.dense import Embedder
from clarity.encoders.sparse import encode_query
from clarity.engines.base import Engine, Point, SearchQuery, iter_all
from clarity.errors import ClarityError, InvalidArgument, NotFound
from clarity.memory import model as m
from clarity.memory.ranking import CANDIDATE_FACTOR, rerank
from clarity.memory.similar import similar_memories
from clarity.memory.timefilter import created_range

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_payload(req: m.StoreRequest, content_hash: str, ts: str) -> dict[str, Any]:
    """The payload of a memory stored by `req` at `ts` (op_store and batched stores alike)."""
    return {
        "content": req.content, "memory_type": req.memory_type, "importance": req.importance,
        "tags": req.tags, "metadata": req.metadata, "context": req.context,
        "created_at": ts, "updated_at": ts, "content_hash": content_hash, "session": req.session,
    }


def store_result(p: Point, *, duplicate: bool = False,
                 similar: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A store's answer for the memory `p` (the new one, or the existing one when `duplicate`)."""
    return {"id": p.id, "stored": not duplicate, "duplicate_of": p.id if duplicate else None,
            "created_at": p.payload.get("created_at", ""), "similar_to": similar or []}


def iso_or_now(value: Any) -> str:
    """`value` if it is an ISO 8601 timestamp with a time zone (engines order by it), else now."""
    if isinstance(value, str):
        try:
            if datetime.fromisoformat(value).tzinfo is not None:
                return value
        except ValueError:
            pass
    return now_iso()


def _memory(p: Point, *, content: bool = True, meta: bool = True) -> dict[str, Any]:
    pl = p.payload
    out: dict[str, Any] = {
        "id": p.id,
        "memory_type": pl.get("memory_type", "note"),
        "importance": pl.get("importance", 0.5),
        "tags": pl.get("tags", []),
        "created_at": pl.get("created_at", ""),
        "updated_at": pl.get("updated_at", ""),
        "content_hash": pl.get("content_hash", ""),
        "session": pl.get("session", ""),
    }
    if content:
        out["content"] = pl.get("content", "")
    if meta:
        out["metadata"] = pl.get("metadata", {})
        out["context"] = pl.get("context", {})
    for key in ("supersedes", "superseded_by"):
        if pl.get(key):
            out[key] = pl[key]
    cos = p.extra.get("cosine", p.score)
    if cos is not None:
        out["similarity"] = round(cos, 6)
    return out


class MemoryService:
    OPS = ("store", "retrieve", "list", "get", "update", "delete", "stats", "export", "import", "backup")

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

    def execute(self, op: str, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        """Run operation `op` with JSON `args` (parsed here, once) or with the operation's request model
        already parsed in this process (not parsed again); returns a JSON-able dict or raises ClarityError."""
        if op not in self.OPS:
            raise InvalidArgument(f"unknown operation {op!r}")
        if not isinstance(args, dict | m.Request):
            raise InvalidArgument("arguments must be a JSON object")
        with self._lock:
            result: dict[str, Any] = getattr(self, f"op_{op}")(args)
            return result

    # ---- helpers -----------------------------------------------------------------------------

    def _duplicate(self, memory_type: str, h: str) -> Point | None:
        """A stored memory with this type and content hash (indexed lookup), if any."""
        found = self._eng().find({"memory_type": memory_type, "content_hash": h}, 1)
        return found[0] if found else None

    def _get_point(self, memory_id: str, with_vectors: bool = False) -> Point:
        found = self._eng().retrieve([memory_id], with_vectors=with_vectors)
        if not found:
            raise NotFound(f"no memory with id {memory_id}")
        return found[0]

    @staticmethod
    def _filter(types: list[str] | None, tags: list[str] | None,
                include_superseded: bool = True) -> dict[str, Any]:
        flt: dict[str, Any] = {"memory_type": types or None, "tags": tags or None}
        if not include_superseded:
            flt["superseded_by"] = {"is_empty": True}
        return flt

    # ---- operations --------------------------------------------------------------------------

    def op_store(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.StoreRequest, args)
        m.check_content(req.content, self.settings.memory.max_content_bytes)
        h = m.content_hash(req.content)
        existing = self._eng().retrieve([req.id])
        if existing:
            p = existing[0]
            if p.payload.get("content_hash") == h and p.payload.get("memory_type") == req.memory_type:
                return store_result(p)
            raise InvalidArgument(f"id {req.id} is already used by another memory")
        dup = self._duplicate(req.memory_type, h)
        if dup is not None:
            return store_result(dup, duplicate=True)
        old = self._get_superseded(req.supersedes) if req.supersedes else None
        payload = new_payload(req, h, now_iso())
        if old is not None:
            payload["supersedes"] = old.id
        point = Point(id=req.id, payload=payload, vector=self.embedder.embed_one(req.content))
        similar = similar_memories(self._eng(), point, self.settings.memory.similar_threshold, old)
        self._eng().upsert([point])
        if old is not None:  # after the new one: a kill in between leaves a one-sided chain, no loss
            old.payload["superseded_by"] = req.id
            self._eng().upsert([old])
        return store_result(point, similar=similar)

    def _get_superseded(self, memory_id: str) -> Point:
        found = self._eng().retrieve([memory_id], with_vectors=True)
        if not found:
            raise InvalidArgument(f"supersedes: no memory with id {memory_id}")
        if found[0].payload.get("superseded_by"):
            raise InvalidArgument(f"supersedes: memory {memory_id} is already superseded by "
                                  f"{found[0].payload['superseded_by']}")
        return found[0]

    def store_batch(self, batch: list[dict[str, Any] | m.Request]) -> list[dict[str, Any] | ClarityError]:
        """Many stores at once, each with op_store's semantics: see `clarity.memory.batch_store`."""
        from clarity.memory.batch_store import store_batch

        with self._lock:
            return store_batch(self, batch)

    def op_retrieve(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.RetrieveRequest, args)
        m.check_content(req.query, self.settings.memory.max_content_bytes, field="query")
        threshold = self.settings.memory.min_similarity if req.min_similarity is None else req.min_similarity
        flt = self._filter(req.types, req.tags, req.include_superseded)
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
        memories = [_memory(p, meta=req.include_metadata) for p in hits]
        return {"query": req.query, "mode": req.mode, "min_similarity": threshold, "count": len(memories),
                "memories": memories}

    def op_list(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.ListRequest, args)
        flt = self._filter(req.types, req.tags, req.include_superseded)
        page = self._eng().newest(flt, req.offset, req.limit)
        total = self._eng().count(flt)
        memories = [_memory(p, content=req.include_content, meta=req.include_content) for p in page]
        return {"total": total, "offset": req.offset, "limit": req.limit, "memories": memories}

    def op_get(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.GetRequest, args)
        return _memory(self._get_point(req.memory_id))

    def op_update(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.UpdateRequest, args)
        changes = req.updates.model_dump(exclude_none=True)
        if not changes:
            raise InvalidArgument("updates must name at least one of: content, memory_type, importance, "
                                  "tags, metadata, context")
        if "content" in changes:
            m.check_content(changes["content"], self.settings.memory.max_content_bytes)
        point = self._get_point(req.memory_id, with_vectors=True)
        payload = dict(point.payload)
        payload.update(changes)
        reembed = "content" in changes and changes["content"] != point.payload.get("content")
        if reembed:
            payload["content_hash"] = m.content_hash(changes["content"])
            point.vector = self.embedder.embed_one(changes["content"])
        payload["updated_at"] = now_iso()
        new = Point(id=point.id, payload=payload, vector=point.vector)
        self._eng().upsert([new])
        return {"id": point.id, "updated_fields": sorted(changes), "reembedded": reembed,
                "updated_at": payload["updated_at"]}

    def op_delete(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.DeleteRequest, args)
        ids = list(dict.fromkeys(req.memory_ids))
        found = {p.id: p for p in self._eng().retrieve(ids)}
        if found:
            self._eng().delete(list(found))
        return {"deleted": [i for i in ids if i in found], "not_found": [i for i in ids if i not in found]}

    def op_stats(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        m.parse(m.StatsRequest, args)
        by_type = self._eng().facet("memory_type")
        state = getattr(self._eng(), "index_state", None)
        index = state() if state is not None else {}
        return {
            "total": self._eng().count(), "by_type": dict(sorted(by_type.items())), "engine": self._eng().name,
            "model": self.embedder.model_name, "dims": self.embedder.dim,
            "storage_bytes": self._eng().storage_bytes(), "home": str(self.settings.home),
            "unindexed": int(index.get("written_since_build", 0)), "index_building": bool(index.get("building")),
            "served_by_pid": os.getpid(),
        }

    def op_export(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        req = m.parse(m.ExportRequest, args)
        points = [p for page in iter_all(self._eng(), with_vectors=req.with_vectors) for p in page]
        points.sort(key=lambda p: (p.payload.get("created_at", ""), p.id))
        out = []
        for p in points:
            item = {"id": p.id, **p.payload}
            if req.with_vectors:
                item["vector"] = p.vector
            out.append(item)
        return {"model": self.embedder.model_name, "count": len(out), "memories": out}

    def op_import(self, args: dict[str, Any] | m.Request) -> dict[str, Any]:
        """Store exported memories, keeping their ids and timestamps; re-embeds (models may differ)."""
        req = m.parse(m.ImportRequest, args)
        keep = ("id", "content", "memory_type", "importance", "tags", "metadata", "context", "session",
                "supersedes")
        parsed = [(item, m.parse(m.StoreRequest, {k: item[k] for k in keep if k in item}))
                  for item in req.memories]
        for _item, r in parsed:
            m.check_content(r.content, self.settings.memory.max_content_bytes)
        existing = {p.id for p in self._eng().retrieve([r.id for _i, r in parsed])} if parsed else set()
        fresh = [(item, r) for item, r in parsed if r.id not in existing]
        for start in range(0, len(fresh), 256):
            chunk = fresh[start:start + 256]
            vectors = self.embedder.embed([r.content for _i, r in chunk])
            points = []
            for (item, r), vector in zip(chunk, vectors, strict=True):
                payload = r.model_dump(exclude={"id", "supersedes"})
                for key in ("supersedes", "superseded_by"):
                    if isinstance(item.get(key), str) and item[key]:
                        payload[key] = item[key]
                payload["content_hash"] = m.content_hash(r.content)
                payload["created_at"] = iso_or_now(item.get("created_at"))
                updated = item.get("updated_at")
                payload["updated_at"] = iso_or_now(updated) if updated else payload["created_at"]
                points.append(Point(id=r.id, payload=payload, vector=vector))
            self._eng().upsert(points)
        return {"imported": len(fresh), "skipped": len(parsed) - len(fresh)}


    def op_backup(self, args: dict[str, Any]) -> dict[str, Any]:
        """Write every memory with its vector to a JSONL file in `<home>/backups/` (see
        `clarity.engines.backup`); runs in the owner while sessions keep working (writes that arrive
        meanwhile wait for the service lock, so the file is one consistent state)."""
        from clarity.engines.backup import write_backup

        if args:
            raise InvalidArgument("backup takes no arguments")
        path, count = write_backup(self._eng(), self.settings.backups_dir, self.embedder.model_name,
                                   self.embedder.dim)
        return {"file": str(path), "count": count, "bytes": path.stat().st_size}


def build_service(settings: Settings,
                  exclusive: Callable[[], AbstractContextManager[None]] | None = None,
                  embedder: Embedder | None = None) -> MemoryService:
    """The service over the configured engine and the configured embedding model (nothing is loaded
    until the first operation needs it). `exclusive()`, given by the lease owner, holds the maintenance
    (exclusive) side of the coordination lock for a block: the engine's one-time migration runs in it."""
    from clarity.engines import open_engine
    from clarity.engines.edge.migrate import migrate_if_needed

    if embedder is None:  # the hot standby passes the model it has already loaded
        embedder = Embedder(settings.embedding.model, settings.cache_dir, settings.embedding.batch_size)

    def factory() -> Engine:
        migrate_if_needed(settings, embedder.dim, exclusive or nullcontext)
        return open_engine(settings)

    return MemoryService(settings, factory, embedder)
