"""qdrant-client local (path) mode as an Engine: collection `memories`, cosine distance.

Guarantees: one lock around every call into the client (local mode is not thread-safe); the client is
opened on the first call and closed by `close()`; `upsert` returns only after qdrant-client has written
the points to its on-disk storage. Not guaranteed: that another process can open the same path while
this one is open (it cannot: qdrant-client takes an exclusive lock; the coordination layer takes turns).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clarity.engines.base import EngineLocked, Filter, Point

log = logging.getLogger(__name__)

COLLECTION = "memories"


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        if ".qdrant_coordination" in root:
            continue
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class QdrantLocalEngine:
    name = "qdrant-local"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._client: Any = None
        self._lock = threading.RLock()
        self._dim: int | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def _c(self) -> Any:
        if self._client is None:
            from qdrant_client import QdrantClient

            log.info("opening qdrant-client local storage at %s", self.path)
            try:
                self._client = QdrantClient(path=str(self.path))
            except RuntimeError as e:
                if "already accessed" in str(e):
                    raise EngineLocked(str(e)) from None
                raise
        return self._client

    def _filter(self, flt: Filter | None) -> Any:
        if not flt:
            return None
        from qdrant_client import models as m

        must: list[Any] = []
        for key, value in flt.items():
            if value is None:
                continue
            if isinstance(value, list | tuple | set):
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=list(value))))
            else:
                must.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
        return m.Filter(must=must) if must else None

    def ensure_collection(self, dim: int) -> None:
        from qdrant_client import models as m

        with self._lock:
            c = self._c()
            if not c.collection_exists(COLLECTION):
                c.create_collection(COLLECTION, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE))
            self._dim = dim

    def upsert(self, points: Sequence[Point]) -> None:
        from qdrant_client import models as m

        with self._lock:
            self._c().upsert(
                COLLECTION,
                points=[m.PointStruct(id=p.id, vector=p.vector or [], payload=p.payload) for p in points],
                wait=True,
            )

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]:
        with self._lock:
            res = self._c().query_points(
                COLLECTION, query=list(vector), limit=limit, query_filter=self._filter(flt),
                score_threshold=score_threshold, with_payload=True,
            )
        return [Point(id=str(p.id), payload=dict(p.payload or {}), score=float(p.score)) for p in res.points]

    def scroll(self, flt: Filter | None = None, with_vectors: bool = False) -> list[Point]:
        out: list[Point] = []
        offset = None
        with self._lock:
            while True:
                batch, offset = self._c().scroll(
                    COLLECTION, scroll_filter=self._filter(flt), limit=1000, offset=offset,
                    with_payload=True, with_vectors=with_vectors,
                )
                out.extend(Point(id=str(p.id), payload=dict(p.payload or {}),
                                 vector=list(p.vector) if with_vectors and p.vector is not None else None)
                           for p in batch)
                if offset is None:
                    return out

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        with self._lock:
            res = self._c().retrieve(COLLECTION, ids=list(ids), with_payload=True, with_vectors=with_vectors)
        return [Point(id=str(p.id), payload=dict(p.payload or {}),
                      vector=list(p.vector) if with_vectors and p.vector is not None else None) for p in res]

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models as m

        with self._lock:
            self._c().delete(COLLECTION, points_selector=m.PointIdsList(points=list(ids)), wait=True)

    def count(self, flt: Filter | None = None) -> int:
        with self._lock:
            return int(self._c().count(COLLECTION, count_filter=self._filter(flt), exact=True).count)

    def storage_bytes(self) -> int:
        return _dir_size(self.path)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                log.info("closing qdrant-client local storage at %s", self.path)
                try:
                    self._client.close()
                finally:
                    self._client = None
