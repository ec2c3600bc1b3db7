"""The page's HTTP routes: the static page, and a small JSON API over `Backend`.

Guarantees: every route answers JSON (`{"error", "kind"}` with a 4xx/5xx status when the operation
refused or failed: 400 bad input, 404 not found, 503 the store is busy or changing hands, 500 anything
else, logged); a route's blocking calls run in a worker thread, never on the event loop; a write's body
is a JSON object of at most `MAX_BODY` bytes. The security checks (Host, token, Origin, CSRF, headers)
run before any route, in `security.Guard`.

`/api/sessions/events` streams the sessions' state as server-sent events, one `data:` line a
`LIVE_INTERVAL_S`, plus a comment line every `KEEPALIVE_S` when nothing changed; a stream ends within
`LIVE_INTERVAL_S` once the server is stopping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clarity import __version__
from clarity.errors import ClarityError, InvalidArgument, NotFound
from clarity.ui.backend import Backend
from clarity.ui.security import Secrets

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("clarity.ui") / "static"))
MAX_BODY = 1024 * 1024
LIVE_INTERVAL_S = 1.0
KEEPALIVE_S = 15.0
PAGE_MAX = 200
EDITABLE = ("content", "memory_type", "importance", "tags")


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _status_of(e: ClarityError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, InvalidArgument):
        return 400
    return 503 if e.retryable or e.kind in ("coordination_timeout", "owner_unresponsive") else 500


async def _run(fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> Response:
    """`fn(*args, **kw)` in a worker thread, as a JSON answer (or the error's)."""
    try:
        res = await anyio.to_thread.run_sync(lambda: fn(*args, **kw))
    except ClarityError as e:
        return OrjsonResponse({"error": e.message, "kind": e.kind}, status_code=_status_of(e))
    except Exception as e:
        log.exception("ui: %s failed", getattr(fn, "__name__", "call"))
        return OrjsonResponse({"error": f"{type(e).__name__}: {e}", "kind": "internal"}, status_code=500)
    return OrjsonResponse(res)


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a whole number, not {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be {lo}..{hi}, not {value}")
    return value


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidArgument(f"the request is larger than {MAX_BODY} bytes")
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidArgument("the request is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the request must be a JSON object")
    return data


def _error(e: ClarityError) -> Response:
    return OrjsonResponse({"error": e.message, "kind": e.kind}, status_code=_status_of(e))


def routes(backend: Backend, keys: Secrets, stopping: threading.Event) -> list[Route | Mount]:
    """The routes of the page served by `backend`; `stopping` set: event streams end (within a second)."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def session(request: Request) -> Response:
        return OrjsonResponse({"csrf": keys.csrf, "version": __version__, "home": str(backend.settings.home),
                               "home_source": backend.settings.home_source, "store_exists": backend.exists()})

    async def memories(request: Request) -> Response:
        q = request.query_params
        try:
            offset = _int(request, "offset", 0, 0, 1_000_000_000)
            limit = _int(request, "limit", 25, 1, PAGE_MAX)
        except ClarityError as e:
            return _error(e)
        filters = {key: [v for v in q.getlist(key[:-1]) if v] or None for key in
                   ("types", "tags", "origins", "sessions")}
        return await _run(backend.memories, q.get("q", "").strip(), filters, mode=q.get("mode") or "hybrid",
                          since=q.get("since") or None, until=q.get("until") or None, offset=offset, limit=limit,
                          superseded=q.get("superseded") == "1")

    async def flagged(request: Request) -> Response:
        try:
            offset = _int(request, "offset", 0, 0, 1_000_000_000)
            limit = _int(request, "limit", 25, 1, PAGE_MAX)
        except ClarityError as e:
            return _error(e)
        return await _run(backend.flagged, offset, limit)

    async def memory(request: Request) -> Response:
        return await _run(backend.memory, request.path_params["memory_id"])

    async def update(request: Request) -> Response:
        try:
            body = await _body(request)
            updates = {k: v for k, v in body.items() if k in EDITABLE}
            unknown = sorted(set(body) - set(EDITABLE))
            if unknown:
                raise InvalidArgument(f"not a field the page edits: {', '.join(unknown)}")
        except ClarityError as e:
            return _error(e)
        return await _run(backend.update, request.path_params["memory_id"], updates)

    async def supersede(request: Request) -> Response:
        try:
            body = await _body(request)
            fields = {k: v for k, v in body.items() if k in EDITABLE}
            if not isinstance(fields.get("content"), str) or not fields["content"].strip():
                raise InvalidArgument("the new memory needs a content")
        except ClarityError as e:
            return _error(e)
        return await _run(backend.supersede, request.path_params["memory_id"], fields)

    async def delete(request: Request) -> Response:
        return await _run(backend.delete, request.path_params["memory_id"])

    async def review(request: Request) -> Response:
        return await _run(backend.review, request.path_params["memory_id"])

    async def sessions(request: Request) -> Response:
        return await _run(backend.sessions)

    async def session_events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            last = b""
            quiet = 0.0
            while not stopping.is_set():
                try:
                    data = orjson.dumps(backend.sessions())  # ~0.2 ms, never waits: no thread hop
                except ClarityError as e:
                    data = orjson.dumps({"error": e.message, "kind": e.kind})
                if data != last:
                    last, quiet = data, 0.0
                    yield b"data: " + data + b"\n\n"
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield b": keepalive\n\n"
                await anyio.sleep(LIVE_INTERVAL_S)
                quiet += LIVE_INTERVAL_S

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def stats(request: Request) -> Response:
        return await _run(backend.stats)

    return [
        Route("/", index),
        Route("/api/session", session),
        Route("/api/memories", memories),
        Route("/api/flagged", flagged),
        Route("/api/memory/{memory_id}", memory),
        Route("/api/memory/{memory_id}/update", update, methods=["POST"]),
        Route("/api/memory/{memory_id}/supersede", supersede, methods=["POST"]),
        Route("/api/memory/{memory_id}/delete", delete, methods=["POST"]),
        Route("/api/memory/{memory_id}/review", review, methods=["POST"]),
        Route("/api/sessions", sessions),
        Route("/api/sessions/events", session_events),
        Route("/api/stats", stats),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
