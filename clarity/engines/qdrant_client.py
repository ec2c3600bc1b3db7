"""qdrant-client as an Engine: a Qdrant server or cluster by `url`, or a local (path) store.

With `url` (and an API key): every session talks to the server directly; the engine is not exclusive
(no lease, no owner). A write returns once the server acknowledged it (`wait=True`): durability is the
server's. Every request runs through `server_calls.ServerCalls` (timeout = the call's time left, retries
of transient failures until the deadline, readable errors naming the URL; see there).

Set-up converges (`ensure_collection`, safe to race among sessions): create the collection and treat
"already exists" as success; refuse a collection whose dense vector is not `dim` cosine (ConfigError,
with the fix); create every payload index Clarity filters, orders or facets on that is missing
(`INDEXES`: an index that exists is success), then check the server lists them.

Concurrency without an owner (what holds when sessions race on one server):
- `insert` writes only points whose id is not stored yet (`update_mode=insert_only`, Qdrant >= 1.17):
  with content-derived ids (the store path, `clarity.memory.batch_store`) one content is one point, and
  the first writer's payload stays. An older server ignores the mode: still one point, last writer's
  payload.
- `set_fields` writes the named payload keys only (`set_payload`), never a read-modify-write of the
  whole payload: updates of different fields by different sessions all land. New vectors are written
  with `update_filter` "`updated_at` is still this update's" (Qdrant >= 1.16), so an older update never
  overwrites a newer one's vectors. Not guaranteed: between the payload and the vector write a reader
  can see the new text with the old vectors; and when an update that re-embeds races one that changes
  only fields the vectors do not index, the vectors can stay those of the text before (the next update
  of that memory, or a re-run of the first, writes them again).
- `mark_superseded` sets `superseded_by` with a filter-scoped `set_payload` (this id AND
  `superseded_by` empty) and `ordering=strong`: a server applies a shard's updates one at a time, so of
  two sessions superseding one memory exactly one matches; the answer says who holds it.
Server behaviour not checked here (no server binary on the development machine): see
tests/harness/qdrant_standin/app.py for what the stand-in reproduces and what not.

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
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from clarity.encoders.sparse import encode_document
from clarity.engines.base import Filter, Point, SearchQuery
from clarity.engines.hybrid import client_query, ranked
from clarity.engines.server_calls import ServerCalls, timeout_middleware
from clarity.engines.server_info import insecure_key, redact
from clarity.errors import ConfigError, EngineLocked, ServerRefused

log = logging.getLogger(__name__)
T = TypeVar("T")

SPARSE = "bm25"
TIE_CAP = 10_000
# every payload key a read filters, orders or facets on: (key, schema)
INDEXES = (("memory_type", "keyword"), ("tags", "keyword"), ("content_hash", "keyword"), ("session", "keyword"),
           ("origin", "keyword"), ("flagged", "keyword"), ("superseded_by", "keyword"), ("created_at", "datetime"),
           ("updated_at", "datetime"))


def _version(v: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(v).split("-")[0].split(".")[:3])
    except ValueError:
        return ()


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
                 collection: str = "memories", client: Any = None, call_budget_s: float = 30.0) -> None:
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
        self.calls = ServerCalls(url or "(an injected client)", call_budget_s)
        self.server_version: str | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def _c(self) -> Any:
        if self._client is None:
            from qdrant_client import QdrantClient

            if self.url is not None:
                log.info("connecting to the Qdrant server at %s (TLS %s)", redact(self.url),
                         "on" if self.url.lower().startswith("https") else "off")
                warning = insecure_key(self.url, self.api_key)
                if warning:
                    log.warning("%s", warning)
                with warnings.catch_warnings():  # said once above, in Clarity's words, to the log
                    warnings.simplefilter("ignore")
                    client = QdrantClient(url=self.url, api_key=self.api_key, check_compatibility=False,
                                          timeout=int(max(1.0, self.calls.default_budget_s)))
                http = getattr(getattr(client, "_client", None), "openapi_client", None)
                if http is not None:
                    http.client.add_middleware(timeout_middleware)
                self._client = client
            else:
                log.info("opening qdrant-client local storage at %s", self.path)
                try:
                    self._client = QdrantClient(path=str(self.path))
                except RuntimeError as e:
                    if "already accessed" in str(e):
                        raise EngineLocked(str(e)) from None
                    raise
        return self._client

    def _run(self, what: str, fn: Callable[[Any], T], write: bool = False) -> T:
        with self._lock:
            c = self._c()
            return self.calls.run(what, lambda: fn(c), write=write)

    def _filter(self, flt: Filter | None, extra: list[Any] | None = None) -> Any:
        from qdrant_client import models as m

        must: list[Any] = list(extra or [])
        must_not: list[Any] = []
        for key, value in (flt or {}).items():
            if value is None:
                continue
            if isinstance(value, dict):
                if "is_empty" in value:
                    empty = m.IsEmptyCondition(is_empty=m.PayloadField(key=key))
                    (must if value["is_empty"] else must_not).append(empty)
                else:
                    must.append(m.FieldCondition(key=key, range=m.DatetimeRange(gte=value.get("gte"),
                                                                                lte=value.get("lte"))))
            elif isinstance(value, list | tuple | set):
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=list(value))))
            else:
                must.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
        return m.Filter(must=must or None, must_not=must_not or None) if must or must_not else None

    # ---- set-up ------------------------------------------------------------------------------

    def ensure_collection(self, dim: int) -> None:
        """See the module docstring ("Set-up converges"). Raises ConfigError for a collection whose
        vectors differ; ServerUnavailable/ServerRefused when the server cannot be used."""
        from qdrant_client import models as m

        if self.url is not None and self.server_version is None:
            self.server_version = self._run("connect", lambda c: c.info().version)
            log.info("Qdrant server %s at %s, collection %s", self.server_version, redact(self.url),
                     self.collection)
        if not self._run("set-up", lambda c: c.collection_exists(self.collection)):
            try:
                self._run("set-up: create the collection", lambda c: c.create_collection(
                    self.collection, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
                    sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)}), write=True)
                log.info("created collection %s", self.collection)
            except ServerRefused as e:
                if e.status != 409 and "already exists" not in e.message:
                    raise
        info = self._run("set-up", lambda c: c.get_collection(self.collection))
        params = info.config.params
        self._check_vectors(params.vectors, dim)
        self._sparse = SPARSE in (params.sparse_vectors or {})
        if self.exclusive:
            return
        missing = [(k, t) for k, t in INDEXES if k not in (info.payload_schema or {})]
        for key, kind in missing:
            schema = m.PayloadSchemaType.DATETIME if kind == "datetime" else m.PayloadSchemaType.KEYWORD
            try:
                self._create_index(key, schema)
            except ServerRefused as e:
                if "already exists" not in e.message:
                    raise
        if missing and self.url is not None:
            listed = self._run("set-up", lambda c: c.get_collection(self.collection)).payload_schema or {}
            absent = [k for k, _t in missing if k not in listed]
            if absent:
                raise ConfigError(f"the Qdrant server at {redact(self.url)} did not keep the payload indexes "
                                  f"{absent} of collection {self.collection}; Clarity needs them for list, stats "
                                  "and filters")
            log.info("created payload indexes %s on %s", [k for k, _t in missing], self.collection)

    def _create_index(self, key: str, schema: Any) -> None:
        self._run(f"set-up: index {key}", lambda c: c.create_payload_index(self.collection, key, schema, wait=True),
                  write=True)

    def _check_vectors(self, vectors: Any, dim: int) -> None:
        from qdrant_client import models as m

        where = f"collection {self.collection}" + (f" on the Qdrant server at {redact(self.url)}" if self.url else "")
        fix = (" Fix: set CLARITY_QDRANT_COLLECTION to another name (Clarity creates it), or remove this "
               "collection if it holds nothing you need, or use the embedding model it was made with.")
        if not isinstance(vectors, m.VectorParams):
            names = sorted(vectors) if isinstance(vectors, dict) else vectors
            raise ConfigError(f"{where} has named dense vectors {names}; Clarity needs one unnamed dense vector "
                              f"of {dim} dimensions, cosine.{fix}")
        if vectors.size != dim or vectors.distance != m.Distance.COSINE:
            raise ConfigError(f"{where} holds dense vectors of {vectors.size} dimensions, distance "
                              f"{vectors.distance.value}; this Clarity's model needs {dim} dimensions, cosine.{fix}")

    # ---- writes ------------------------------------------------------------------------------

    def _vectors(self, p: Point) -> Any:
        from qdrant_client import models as m

        sv = p.sparse if p.sparse is not None else encode_document(str(p.payload.get("content", "")))
        if not self._sparse or sv is None:
            return p.vector or []
        return {"": p.vector or [], SPARSE: m.SparseVector(indices=sv[0], values=sv[1])}

    def _structs(self, points: Sequence[Point]) -> list[Any]:
        from qdrant_client import models as m

        return [m.PointStruct(id=p.id, vector=self._vectors(p), payload=p.payload) for p in points]

    def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = self._structs(points)
        self._run("write", lambda c: c.upsert(self.collection, points=structs, wait=True), write=True)

    def insert(self, points: Sequence[Point]) -> None:
        """Write the points whose id is not stored yet; stored ones are left as they are."""
        from qdrant_client import models as m

        if not points:
            return
        structs = self._structs(points)
        mode = m.UpdateMode.INSERT_ONLY if self.url is None or _version(self.server_version) >= (1, 17) else None
        self._run("write", lambda c: c.upsert(self.collection, points=structs, wait=True, update_mode=mode),
                  write=True)

    def set_fields(self, point_id: str, fields: dict[str, Any], vector: list[float] | None = None,
                   sparse: tuple[list[int], list[float]] | None = None) -> bool:
        """Set the payload keys `fields` of point `point_id` (others untouched: `set_payload`); then its
        dense `vector` and/or BM25 `sparse` vector when given, written only while the point's
        `updated_at` is still `fields["updated_at"]` (a later update's vectors are not overwritten with
        older ones). False when the point does not exist."""
        from qdrant_client import models as m

        if not self.retrieve([point_id]):
            return False
        has_id = m.Filter(must=[m.HasIdCondition(has_id=[point_id])])
        self._run("update", lambda c: c.set_payload(self.collection, payload=fields, points=has_id, wait=True,
                                                    ordering=m.WriteOrdering.STRONG), write=True)
        vec: dict[str, Any] = {}
        if vector is not None:
            vec[""] = vector
        if sparse is not None and self._sparse:
            vec[SPARSE] = m.SparseVector(indices=sparse[0], values=sparse[1])
        if vec:
            ts = fields["updated_at"]
            same = m.Filter(must=[m.HasIdCondition(has_id=[point_id]), m.FieldCondition(
                key="updated_at", range=m.DatetimeRange(gte=ts, lte=ts))])
            self._run("update", lambda c: c.update_vectors(
                self.collection, points=[m.PointVectors(id=point_id, vector=vec)], wait=True,
                ordering=m.WriteOrdering.STRONG, update_filter=same), write=True)
        return bool(self.retrieve([point_id]))

    def mark_superseded(self, point_id: str, by: str) -> str | None:
        """Set `superseded_by = by` on `point_id` only if it has none; the point's `superseded_by` after
        the attempt (== `by`: this call won), or None when the point does not exist."""
        from qdrant_client import models as m

        free = m.Filter(must=[m.HasIdCondition(has_id=[point_id]),
                              m.IsEmptyCondition(is_empty=m.PayloadField(key="superseded_by"))])
        self._run("supersede", lambda c: c.set_payload(self.collection, payload={"superseded_by": by}, points=free,
                                                       wait=True, ordering=m.WriteOrdering.STRONG), write=True)
        found = self.retrieve([point_id])
        return str(found[0].payload.get("superseded_by") or "") if found else None

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models as m

        if not ids:
            return
        sel = m.PointIdsList(points=list(ids))
        self._run("delete", lambda c: c.delete(self.collection, points_selector=sel, wait=True), write=True)

    # ---- reads -------------------------------------------------------------------------------

    def search(self, vector: Sequence[float], limit: int, flt: Filter | None = None,
               score_threshold: float | None = None) -> list[Point]:
        f = self._filter(flt)
        res = self._run("search", lambda c: c.query_points(
            self.collection, query=list(vector), limit=limit, query_filter=f,
            score_threshold=score_threshold, with_payload=True))
        return [Point(id=str(p.id), payload=dict(p.payload or {}), score=float(p.score)) for p in res.points]

    def query(self, sq: SearchQuery) -> list[Point]:
        if not self._sparse and sq.mode != "semantic":
            sq = SearchQuery(**{**sq.__dict__, "mode": "semantic"})
        kwargs = client_query(sq, self._filter(sq.flt), SPARSE)
        if kwargs is None:
            return []
        res = self._run("search", lambda c: c.query_points(self.collection, **kwargs))
        return ranked([(Point(id=str(r.id), payload=dict(r.payload or {}), score=float(r.score)), _vector(r.vector))
                       for r in res.points], sq.dense)

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[Point]:
        if not ids:
            return []
        res = self._run("read", lambda c: c.retrieve(self.collection, ids=list(ids), with_payload=True,
                                                    with_vectors=with_vectors))
        return [Point(id=str(p.id), payload=dict(p.payload or {}),
                      vector=_vector(p.vector) if with_vectors else None) for p in res]

    def newest(self, flt: Filter | None, offset: int, limit: int) -> list[Point]:
        from qdrant_client import models as m

        want = offset + limit
        if limit <= 0:
            return []
        f = self._filter(flt)
        recs, _ = self._run("list", lambda c: c.scroll(
            self.collection, scroll_filter=f, limit=want, with_payload=True,
            order_by=m.OrderBy(key="created_at", direction=m.Direction.DESC)))
        found = {str(r.id): r for r in recs}
        if len(recs) == want:
            edge = (recs[-1].payload or {}).get("created_at")
            tie = self._filter(flt, [m.FieldCondition(key="created_at", range=m.DatetimeRange(gte=edge, lte=edge))])
            ties, _ = self._run("list", lambda c: c.scroll(self.collection, scroll_filter=tie, limit=TIE_CAP,
                                                          with_payload=True))
            for r in ties:
                found.setdefault(str(r.id), r)
        ordered = sorted(found.values(), key=lambda r: ((r.payload or {}).get("created_at", ""), str(r.id)),
                         reverse=True)
        return [Point(id=str(r.id), payload=dict(r.payload or {})) for r in ordered[offset:want]]

    def find(self, flt: Filter, limit: int = 1) -> list[Point]:
        f = self._filter(flt)
        recs, _ = self._run("find", lambda c: c.scroll(self.collection, scroll_filter=f, limit=limit,
                                                      with_payload=True))
        return [Point(id=str(r.id), payload=dict(r.payload or {})) for r in recs]

    def count(self, flt: Filter | None = None) -> int:
        f = self._filter(flt)
        return int(self._run("count", lambda c: c.count(self.collection, count_filter=f, exact=True)).count)

    def facet(self, key: str, limit: int = 1000) -> dict[str, int]:
        res = self._run("stats", lambda c: c.facet(self.collection, key=key, limit=limit, exact=True))
        return {str(h.value): int(h.count) for h in res.hits}

    def page(self, cursor: str | None, limit: int,
             with_vectors: bool = False) -> tuple[list[Point], str | None]:
        recs, nxt = self._run("read", lambda c: c.scroll(self.collection, limit=limit, offset=cursor,
                                                        with_payload=True, with_vectors=with_vectors))
        return ([Point(id=str(r.id), payload=dict(r.payload or {}),
                       vector=_vector(r.vector) if with_vectors else None) for r in recs],
                str(nxt) if nxt is not None else None)

    def storage_bytes(self) -> int:
        """Local store: its files. Server: the collection's segments' `disk_usage_bytes` from the
        server's telemetry (0 when the server does not say within 2 s)."""
        if self.path is not None:
            return _dir_size(self.path)
        if self.url is None:
            return 0
        return server_storage_bytes(self.url, self.api_key, self.collection)

    def sync(self) -> None:
        """Local mode writes each upsert to SQLite before returning; a server acknowledged it."""

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None


def server_storage_bytes(url: str, api_key: str | None, collection: str, timeout_s: float = 2.0) -> int:
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/telemetry", params={"details_level": 4}, timeout=timeout_s,
                      headers={"api-key": api_key} if api_key else {})
        cols = ((r.json().get("result") or {}).get("collections") or {}).get("collections") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return 0
    total = 0
    for col in cols:
        if not isinstance(col, dict) or col.get("id") != collection:
            continue
        for shard in col.get("shards") or []:
            for seg in ((shard or {}).get("local") or {}).get("segments") or []:
                size = ((seg or {}).get("info") or {}).get("disk_usage_bytes")
                total += size if isinstance(size, int) else 0
    return total
