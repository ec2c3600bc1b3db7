"""Batched stores (the owner's batcher calls this through `MemoryService.store_batch`, which holds the
service lock): one id lookup, one embedding call and one engine write for every new memory of the batch.

Per item it keeps `op_store`'s semantics: an id already stored with the same content returns that memory
(a retry is idempotent), the same content and type as a stored memory or as an earlier item of the batch
returns `duplicate_of`, near-copies are reported in `similar_to`, and an item with `supersedes` runs as
a single store (its two writes keep their order). Per item a result (`service.store_result`) or the ClarityError
op_store would raise (that item changed nothing). An item may be a JSON object (parsed here) or a
StoreRequest parsed in this process (taken as is). An exception raised here means no item was acknowledged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from clarity import timings
from clarity.engines.base import Point
from clarity.errors import ClarityError, InvalidArgument
from clarity.memory import model as m
from clarity.memory.service import new_payload, now_iso, store_result
from clarity.memory.similar import similar_memories

if TYPE_CHECKING:
    from clarity.memory.service import MemoryService


def store_batch(svc: MemoryService, batch: list[dict[str, Any] | m.Request]) -> list[dict[str, Any] | ClarityError]:
    """See the module docstring. The caller holds the service lock."""
    out: list[dict[str, Any] | ClarityError] = []
    reqs: list[tuple[int, m.StoreRequest, str]] = []
    for i, args in enumerate(batch):
        try:
            req = m.parse(m.StoreRequest, args)
            m.check_content(req.content, svc.settings.memory.max_content_bytes)
            if req.supersedes:  # two writes in a set order: run it as a single store
                out.append(svc.op_store(args))
                continue
        except ClarityError as e:
            out.append(e)
            continue
        out.append(InvalidArgument("unanswered"))  # replaced below
        reqs.append((i, req, m.content_hash(req.content)))
    stored = {p.id: p for p in svc._eng().retrieve(list(dict.fromkeys(r.id for _, r, _ in reqs)))} \
        if reqs else {}
    new: dict[str, tuple[int, Point]] = {}  # id -> (item, point) written by this batch
    by_hash: dict[tuple[str, str], Point] = {}  # (type, hash) -> point written by this batch
    todo: list[tuple[int, Point]] = []
    ts = now_iso()
    for i, req, h in reqs:
        p = stored.get(req.id) or (new[req.id][1] if req.id in new else None)
        if p is not None:
            if p.payload.get("content_hash") == h and p.payload.get("memory_type") == req.memory_type:
                out[i] = store_result(p)
            else:
                out[i] = InvalidArgument(f"id {req.id} is already used by another memory")
            continue
        dup = by_hash.get((req.memory_type, h)) or svc._duplicate(req.memory_type, h)
        if dup is not None:
            out[i] = store_result(dup, duplicate=True)
            continue
        point = Point(id=req.id, payload=new_payload(req, h, ts), vector=[])
        new[req.id] = (i, point)
        by_hash[(req.memory_type, h)] = point
        todo.append((i, point))
    if todo:
        vectors = svc.embedder.embed([p.payload["content"] for _, p in todo])
        for (_, p), v in zip(todo, vectors, strict=True):
            p.vector = v
        threshold = svc.settings.memory.similar_threshold
        similar = {p.id: similar_memories(svc._eng(), p, threshold, None) for _, p in todo}
        t0 = time.perf_counter()
        svc._eng().upsert([p for _, p in todo])
        timings.record("engine", time.perf_counter() - t0)
        for i, p in todo:
            out[i] = store_result(p, similar=similar[p.id])
    return out
