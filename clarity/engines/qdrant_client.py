"""qdrant-client as an Engine: a Qdrant server or cluster by `url`, or a local (path) store.

With `url` (and an API key): every session talks to the server directly; the engine is not exclusive
(no lease); a write returns once the server acknowledged it (`wait=True`), so durability is the
server's. New collections get the dense vector (unnamed, cosine), the sparse slot `bm25` and payload
indexes. Tested here only against qdrant-client's local mode through an injected client (no Qdrant
server on this machine): the HTTP/gRPC transport, API-key auth and server-side indexes are untested.

Without `url`: the legacy local store under `<home>/qdrant/` (collection `memories`), exclusive (the
client takes a `flock`); used for migration and as the benchmark's comparison engine. Local mode loads
every point into RAM at open and answers filters by scanning; it is not O(limit), and not for 100k.

Sparse BM25 vectors: computed here with Qdrant Edge's `Bm25` (`clarity.encoders.sparse`), the same as
the Edge engine stores, into the `bm25` slot, and queries are fused the same way
(`clarity.engines.hybrid`), so both engines rank alike. A collection created before the slot existed
(no `bm25`) gets no sparse vectors and every mode falls back to the dense search.

Guarantees: one lock around every call into the client (local mode is not thread-safe).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clarity.encoders.sparse import encode_document
from clarity.engines.base import Filter, Point, SearchQuery
from clarity.engines.hybrid import client_query, ranked
from clarity.errors import EngineLocked

log = logging.getLogger(__name__)

SPARSE = "bm25"
TIE_CAP = 10_000


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        if ".qdrant_coordination" in root or f"{os.sep}edge" in root:
            continue
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _vector(v: Any) -> list[float] | None:
    if v is None:
        return None
    if isinstance(v, dict):  # named vectors: the first dense one
        for value in v.values():
            if isinstance(value, list):
                return list(value)
        return None
    return list(v)


class QdrantClientEngine:
    name = "qdrant-client"

    def __init__(self, *, path: Path | None = None, url: str | None = None, api_key: str | None = None,
                 collection: str = "memories", client: Any = None) -> None:
        if path is None and url is None and client is None:
            raise ValueError("QdrantClientEngine needs a path, a url or a client")
        self.path = path
        self.url = url
        self.api_key = api_key
        self.collection = collection
        self.exclusive = url is None and client is None
        self.name = "qdrant-server" if url is not None or client is not None else "qdrant-local"
        self._client: Any = client
        self._sparse = True
        self._lock = threading.RLock()

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def _c(self) -> Any:
        if self._client is None:
            from qdrant_client import QdrantClient

            if self.url is not None:
                log.info("connecting to Qdrant at %s", self.url)
                self._client = QdrantClient(url=self.url, api_key=self.api_key)
            else:
                log.info("opening qdrant-client local storage at %s", self.path)
                try:
                    self._client = QdrantClient(path=str(self.path))
                except RuntimeError as e:
                    if "already accessed" in str(e):
                        raise EngineLocked(str(e)) from None
                    raise
        return self._client

    def _filter(self, flt: Filter | None, extra: list[Any] | None = None) -> Any:
        from qdrant_client import models as m

        must: list[Any] = list(extra or [])
        for key, value in (flt or {}).items():
            if value is None:
                continue
            if isinstance(value, dict):
                if value.get("is_empty"):
                    must.append(m.IsEmptyCondition(is_empty=m.PayloadField(key=key)))
                else:
                    must.append(m.FieldCondition(key=key, range=m.DatetimeRange(gte=value.get("gte"),
                                                                                lte=value.get("lte"))))
            elif isinstance(value, list | tuple | set):
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=list(value))))
            else:
                must.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
        return m.Filter(must=must) if must else None

    def ensure_collection(self, dim: int) -> None:
        from qdrant_client import models as m

        with self._lock:
            c = self._c()
            if not c.collection_exists(self.collection):
                c.create_collection(
                    self.collection, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
                    sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                )
                if not self.exclusive:
                    for name in ("memory_type", "tags", "content_hash", "session"):
                        c.create_payload_index(self.collection, name, m.PayloadSchemaType.KEYWORD)
                    c.create_payload_index(self.collection, "created_at", m.PayloadSchemaType.DATETIME)
            params = c.get_collection(self.collection).config.params
            self._sparse = SPARSE in (params.sparse_vectors or {})

    def _vectors(self, p: Point) -> Any:
        from qdrant_client import models as m

        sv = p.sparse if p.sparse is not None else encode_document(str(p.payload.get("content", "")))
        if not self._sparse or sv is None:
            return p.vector or []
        return {"": p.vector or [], SPARSE: m.SparseVector(indices=sv[0], values=sv[1])}

    def upsert(self, points: Sequence[Point]) -> None:
        from qdrant_client import models as m

        if not points:
            return
        with self._lock:
            self._c().upsert(
                self.collection,
                points=[m.PointStruct(id=p.id, vector=self._vectors(p), payload=p.payload) for p in points],
                wait=True,
            )

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models as m

        if not ids:
            return
        with self._lock:
            self._c().delete(self.collection, points_selector=m.PointIdsList(points=list(ids)), wait=True)

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]:
        with self._lock:
            res = self._c().query_points(
                self.collection, query=list(vector), limit=limit, query_filter=self._filter(flt),
                score_threshold=score_threshold, with_payload=True,
            )
        return [Point(id=str(p.id), payload=dict(p.payload or {}), score=float(p.score)) for p in res.points]

    def query(self, sq: SearchQuery) -> list[Point]:
        if not self._sparse and sq.mode != "semantic":
            sq = SearchQuery(**{**sq.__dict__, "mode": "semantic"})
        kwargs = client_query(sq, self._filter(sq.flt), SPARSE)
        if kwargs is None:
            return []
        with self._lock:
            res = self._c().query_points(self.collection, **kwargs)
        return ranked([(Point(id=str(r.id), payload=dict(r.payload or {}), score=float(r.score)), _vector(r.vector))
                       for r in res.points], sq.dense)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        with self._lock:
            res = self._c().retrieve(self.collection, ids=list(ids), with_payload=True, with_vectors=with_vectors)
        return [Point(id=str(p.id), payload=dict(p.payload or {}),
                      vector=_vector(p.vector) if with_vectors else None) for p in res]

    def newest(self, flt: Filter | None, offset: int, limit: int) -> list[Point]:
        from qdrant_client import models as m

        want = offset + limit
        if limit <= 0:
            return []
        with self._lock:
            recs, _ = self._c().scroll(self.collection, scroll_filter=self._filter(flt), limit=want,
                                       order_by=m.OrderBy(key="created_at", direction=m.Direction.DESC),
                                       with_payload=True)
            found = {str(r.id): r for r in recs}
            if len(recs) == want:
                edge = (recs[-1].payload or {}).get("created_at")
                tie = m.FieldCondition(key="created_at", range=m.DatetimeRange(gte=edge, lte=edge))
                ties, _ = self._c().scroll(self.collection, scroll_filter=self._filter(flt, [tie]),
                                           limit=TIE_CAP, with_payload=True)
                for r in ties:
                    found.setdefault(str(r.id), r)
        ordered = sorted(found.values(), key=lambda r: ((r.payload or {}).get("created_at", ""), str(r.id)),
                         reverse=True)
        return [Point(id=str(r.id), payload=dict(r.payload or {})) for r in ordered[offset:want]]

    def find(self, flt: Filter, limit: int = 1) -> list[Point]:
        with self._lock:
            recs, _ = self._c().scroll(self.collection, scroll_filter=self._filter(flt), limit=limit,
                                       with_payload=True)
        return [Point(id=str(r.id), payload=dict(r.payload or {})) for r in recs]

    def count(self, flt: Filter | None = None) -> int:
        with self._lock:
            return int(self._c().count(self.collection, count_filter=self._filter(flt), exact=True).count)

    def facet(self, key: str, limit: int = 1000) -> dict[str, int]:
        with self._lock:
            res = self._c().facet(self.collection, key=key, limit=limit, exact=True)
        return {str(h.value): int(h.count) for h in res.hits}

    def page(self, cursor: str | None, limit: int,
             with_vectors: bool = False) -> tuple[list[Point], str | None]:
        with self._lock:
            recs, nxt = self._c().scroll(self.collection, limit=limit, offset=cursor, with_payload=True,
                                         with_vectors=with_vectors)
        return ([Point(id=str(r.id), payload=dict(r.payload or {}),
                       vector=_vector(r.vector) if with_vectors else None) for r in recs],
                str(nxt) if nxt is not None else None)

    def storage_bytes(self) -> int:
        return _dir_size(self.path) if self.path is not None else 0

    def sync(self) -> None:
        """Local mode writes each upsert to SQLite before returning; a server acknowledged it."""

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
