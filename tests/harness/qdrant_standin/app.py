"""A stand-in Qdrant server: the REST subset Clarity's qdrant-client calls use, over qdrant-client's local mode.

It runs as its own process (`python -m tests.harness.qdrant_standin --port P --path DIR`, or through
`tests.harness.qdrant_standin.StandIn`), so the server engine is driven through qdrant-client's real
HTTP transport (httpx, JSON, status codes, the `api-key` header), and a restart is a real process exit.

The rules a real server applies that Clarity must respect, reproduced here:
- the API key (`api-key` header or `Authorization: Bearer`) on every route but `/`, `/healthz`,
  `/livez`, `/readyz` (401 without it);
- `order_by` needs a range (datetime/integer/float) index on its key, `facet` a keyword index (400, with
  Qdrant's wording); creating an index that exists with the same type succeeds;
- a collection that exists answers 409 "already exists" to a create; a missing collection 404;
- `set_payload` / `overwrite_payload` by ids on a missing point answer 404 ("No point with id ... found");
- strict mode (`--strict`): a filter (in a read or in an update) on a key without a payload index is
  refused (400 "Index required but not found ..."), as `strict_mode_config.unindexed_filtering_*=false`;
- every update is applied in arrival order under one lock, as a shard's single update worker does, and
  returns after it is persisted (local mode commits each write to SQLite), like `wait=true`.
Knobs: `--delay-ms` (every non-health request waits this long before it is served; also settable at run
time with `PUT /__standin/delay {"ms": N}`, key required), `--fail-next N` via `PUT /__standin/fail`
(the next N non-health requests answer 503), and a restart is the harness killing the process and
starting it again on the same port and folder (payload indexes are kept in `indexes.json` beside it).

Not reproduced (the stand-in is not Qdrant): gRPC; Qdrant's own scoring (HNSW approximate search,
quantization, its DBSF/RRF implementation: local mode's exact search and fusion are used); payload index
data structures and their performance (indexes are only recorded, local mode scans); WAL timing,
segment optimizers, snapshots; clusters (shards, replicas, write ordering, consistency: `ordering` is
accepted and ignored); `update_filter` / `update_mode` are applied by local mode's code, not Qdrant's;
telemetry beyond a `disk_usage_bytes` figure; rate limits and the other strict-mode limits; TLS.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("qdrant-standin")

VERSION = "1.20.0"
OPEN_ROUTES = {"/", "/healthz", "/livez", "/readyz"}
RANGE_TYPES = {"datetime", "integer", "float"}
KEYWORD_TYPES = {"keyword", "uuid"}


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _ok(result: Any, status: int = 200) -> JSONResponse:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json", exclude_none=True)
    elif isinstance(result, list):
        result = [r.model_dump(mode="json", exclude_none=True) if isinstance(r, BaseModel) else r for r in result]
    return JSONResponse({"result": result, "status": "ok", "time": 0.0}, status_code=status)


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": 0.0}, status_code=status)


def _filter_keys(node: Any) -> Iterator[str]:
    """Every payload key a filter (JSON) names."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "key" and isinstance(v, str):
                yield v
            elif k in ("is_empty", "is_null") and isinstance(v, dict) and isinstance(v.get("key"), str):
                yield v["key"]
            else:
                yield from _filter_keys(v)
    elif isinstance(node, list):
        for v in node:
            yield from _filter_keys(v)


class StandIn:
    """The server's state: the local-mode client, the recorded payload indexes, the knobs."""

    def __init__(self, path: Path, api_key: str | None, strict: bool, delay_ms: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.api_key = api_key
        self.strict = strict
        self.delay_s = delay_ms / 1000
        self.fail_next = 0
        self.lock = threading.Lock()
        self.client = QdrantClient(path=str(path / "storage"))
        self._index_file = path / "indexes.json"
        self.indexes: dict[str, dict[str, str]] = (json.loads(self._index_file.read_text())
                                                   if self._index_file.exists() else {})

    def save_indexes(self) -> None:
        tmp = self._index_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.indexes))
        os.replace(tmp, self._index_file)

    def exists(self, name: str) -> None:
        if not self.client.collection_exists(name):
            raise Refused(404, f"Not found: Collection `{name}` doesn't exist!")

    def need_index(self, coll: str, key: str, kinds: set[str], kind_names: str) -> None:
        if self.indexes.get(coll, {}).get(key) not in kinds:
            raise Refused(400, f"Bad request: Index required but not found for \"{key}\" of one of the following "
                               f"types: [{kind_names}]. Help: Create an index for this key or use a different "
                               "filter.")

    def check_filter(self, coll: str, flt: Any) -> None:
        if not self.strict or flt is None:
            return
        for key in _filter_keys(flt):
            if key not in self.indexes.get(coll, {}):
                self.need_index(coll, key, set(), "keyword, integer, float, datetime, uuid")


def build_app(state: StandIn) -> Starlette:
    def route(fn: Callable[[Request, dict[str, Any]], Any], update: bool = False) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            if request.url.path not in OPEN_ROUTES:
                key = request.headers.get("api-key")
                auth = request.headers.get("authorization", "")
                if auth.lower().startswith("bearer "):
                    key = key or auth[7:]
                if state.api_key is not None and key != state.api_key:
                    return _err(401, "Must provide an API key or an Authorization bearer token" if key is None
                                else "Invalid API key or JWT")
                if state.fail_next > 0 and not request.url.path.startswith("/__standin"):
                    state.fail_next -= 1
                    return _err(503, "Service Unavailable: the stand-in was told to fail this request")
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return _err(400, "Format error in JSON body")
            slow = state.delay_s if not request.url.path.startswith("/__standin") else 0.0

            def work() -> Any:
                if slow > 0:
                    time.sleep(slow)  # a slow server: this request only, outside the lock
                with state.lock:  # one update worker: requests apply in arrival order
                    return fn(request, body)

            try:
                result = await run_in_threadpool(work)
                if isinstance(result, Response):
                    return result
                return _ok(result)
            except Refused as e:
                return _err(e.status, e.message)
            except (ValueError, KeyError, TypeError) as e:
                return _err(400, f"Bad request: {e}")
            except Exception as e:  # noqa: BLE001 - a server answers 500, it does not die
                log.exception("request failed")
                return _err(500, f"Service internal error: {type(e).__name__}: {e}")

        return handler

    c = state.client

    def coll(r: Request) -> str:
        return str(r.path_params["name"])

    def root(r: Request, b: dict[str, Any]) -> Any:
        return JSONResponse({"title": "qdrant - vector search engine (clarity stand-in)", "version": VERSION,
                             "commit": None})  # as Qdrant: not wrapped in {"result": ...}

    def health(r: Request, b: dict[str, Any]) -> Any:
        return Response("healthz check passed", media_type="text/plain")

    def exists(r: Request, b: dict[str, Any]) -> Any:
        return {"exists": c.collection_exists(coll(r))}

    def create(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        if c.collection_exists(name):
            raise Refused(409, f"Wrong input: Collection `{name}` already exists!")
        req = m.CreateCollection(**b)
        c.create_collection(name, vectors_config=req.vectors, sparse_vectors_config=req.sparse_vectors)
        state.indexes[name] = {}
        state.save_indexes()
        return True

    def delete_coll(r: Request, b: dict[str, Any]) -> Any:
        state.indexes.pop(coll(r), None)
        state.save_indexes()
        return c.delete_collection(coll(r))

    def info(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        ci = c.get_collection(name)
        data = ci.model_dump(mode="json", exclude_none=True)
        data["payload_schema"] = {k: {"data_type": v, "points": 0} for k, v in state.indexes.get(name, {}).items()}
        return data

    def index(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        schema = b.get("field_schema")
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if not isinstance(b.get("field_name"), str) or not isinstance(kind, str):
            raise Refused(400, "Bad request: field_name and field_schema are required")
        state.indexes.setdefault(name, {})[b["field_name"]] = kind
        state.save_indexes()
        return {"operation_id": 0, "status": "completed"}

    def upsert(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.PointsList(**b)
        state.check_filter(name, b.get("update_filter"))
        return c.upsert(name, points=req.points, update_filter=req.update_filter, update_mode=req.update_mode)

    def selector(b: dict[str, Any]) -> Any:
        if "points" in b:
            return m.PointIdsList(points=b["points"])
        return m.FilterSelector(filter=m.Filter(**b["filter"]))

    def delete_points(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        state.check_filter(name, b.get("filter"))
        return c.delete(name, points_selector=selector(b))

    def payload(overwrite: bool) -> Callable[[Request, dict[str, Any]], Any]:
        def run(r: Request, b: dict[str, Any]) -> Any:
            name = coll(r)
            state.exists(name)
            state.check_filter(name, b.get("filter"))
            if b.get("points") is not None:
                found = {str(p.id) for p in c.retrieve(name, ids=b["points"], with_payload=False)}
                missing = [p for p in b["points"] if str(p) not in found]
                if missing:
                    raise Refused(404, f"Not found: No point with id {missing[0]} found")
                points: Any = b["points"] if b.get("filter") is None else m.Filter(
                    must=[m.HasIdCondition(has_id=b["points"]), m.Filter(**b["filter"])])
            else:
                points = m.Filter(**b["filter"])
            if overwrite:
                return c.overwrite_payload(name, payload=b["payload"], points=points)
            return c.set_payload(name, payload=b["payload"], points=points, key=b.get("key"))
        return run

    def vectors(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.UpdateVectors(**b)
        state.check_filter(name, b.get("update_filter"))
        return c.update_vectors(name, points=req.points, update_filter=req.update_filter)

    def get_points(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.PointRequest(**b)
        return c.retrieve(name, ids=req.ids, with_payload=req.with_payload if req.with_payload is not None else True,
                          with_vectors=req.with_vector if req.with_vector is not None else False)

    def scroll(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.ScrollRequest(**b)
        state.check_filter(name, b.get("filter"))
        if req.order_by is not None:
            key = req.order_by if isinstance(req.order_by, str) else req.order_by.key
            if state.indexes.get(name, {}).get(key) not in RANGE_TYPES:
                raise Refused(400, f"Bad request: No range index for `order_by` key: `{key}`. Please create one "
                                   "to use `order_by`.")
        recs, nxt = c.scroll(name, scroll_filter=req.filter, limit=req.limit or 10, offset=req.offset,
                             order_by=req.order_by,
                             with_payload=req.with_payload if req.with_payload is not None else True,
                             with_vectors=req.with_vector if req.with_vector is not None else False)
        return {"points": [p.model_dump(mode="json", exclude_none=True) for p in recs], "next_page_offset": nxt}

    def count(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.CountRequest(**b)
        state.check_filter(name, b.get("filter"))
        return c.count(name, count_filter=req.filter, exact=True)

    def facet(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.FacetRequest(**b)
        state.need_index(name, req.key, KEYWORD_TYPES, "keyword")
        state.check_filter(name, b.get("filter"))
        return c.facet(name, key=req.key, facet_filter=req.filter, limit=req.limit or 10, exact=True)

    def query(r: Request, b: dict[str, Any]) -> Any:
        name = coll(r)
        state.exists(name)
        req = m.QueryRequest(**b)
        state.check_filter(name, b.get("filter"))
        for pf in b.get("prefetch") or []:
            state.check_filter(name, pf.get("filter"))
        return c.query_points(name, query=req.query, using=req.using, prefetch=req.prefetch, query_filter=req.filter,
                              limit=req.limit or 10, offset=req.offset, score_threshold=req.score_threshold,
                              with_payload=req.with_payload if req.with_payload is not None else False,
                              with_vectors=req.with_vector if req.with_vector is not None else False)

    def telemetry(r: Request, b: dict[str, Any]) -> Any:
        cols = []
        for d in (state.path / "storage" / "collection").glob("*"):
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            cols.append({"id": d.name, "shards": [{"local": {"segments": [{"info": {"disk_usage_bytes": size}}]}}]})
        return {"collections": {"collections": cols}}

    def set_delay(r: Request, b: dict[str, Any]) -> Any:
        state.delay_s = float(b.get("ms", 0)) / 1000
        return True

    def set_fail(r: Request, b: dict[str, Any]) -> Any:
        state.fail_next = int(b.get("count", 0))
        return True

    C = "/collections/{name}"
    routes = [
        Route("/", route(root)), Route("/healthz", route(health)), Route("/livez", route(health)),
        Route("/readyz", route(health)), Route("/telemetry", route(telemetry)),
        Route(C + "/exists", route(exists)),
        Route(C, route(create), methods=["PUT"]), Route(C, route(info), methods=["GET"]),
        Route(C, route(delete_coll), methods=["DELETE"]),
        Route(C + "/index", route(index), methods=["PUT"]),
        Route(C + "/points", route(upsert), methods=["PUT"]), Route(C + "/points", route(get_points), methods=["POST"]),
        Route(C + "/points/delete", route(delete_points), methods=["POST"]),
        Route(C + "/points/payload", route(payload(False)), methods=["POST"]),
        Route(C + "/points/payload", route(payload(True)), methods=["PUT"]),
        Route(C + "/points/vectors", route(vectors), methods=["PUT"]),
        Route(C + "/points/scroll", route(scroll), methods=["POST"]),
        Route(C + "/points/count", route(count), methods=["POST"]),
        Route(C + "/points/query", route(query), methods=["POST"]),
        Route(C + "/facet", route(facet), methods=["POST"]),
        Route("/__standin/delay", route(set_delay), methods=["PUT"]),
        Route("/__standin/fail", route(set_fail), methods=["PUT"]),
    ]
    return Starlette(routes=routes)


def wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
