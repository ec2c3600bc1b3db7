"""Storing memories: the one store path. A single store is a batch of one (`MemoryService.op_store`); the
owner's batcher sends the stores queued while it was busy as one batch (`MemoryService.store_batch`,
which holds the service lock).

A batch costs one id lookup, one dedup lookup per item (by the indexed `content_hash`), one embedding
call and one engine write for every new memory, plus a second write for the memories its items
supersede. Per item, in batch order, it keeps the semantics of a store run on its own after the items
before it:
- an id already stored (before the batch or by an earlier item) with the same content and type returns
  that memory (a retry is idempotent); with other content it is refused;
- the same content and type as a stored memory or as an earlier item returns `duplicate_of` (nothing
  is written, `supersedes` is not applied);
- `supersedes` must name a stored memory (or an earlier item's) that nothing supersedes yet (counting
  earlier items); its two writes keep their order: the new memory is written (with `supersedes`) before
  the old one gets `superseded_by` (a kill in between leaves a one-sided chain, nothing is lost);
- near-copies among the memories stored before the batch are reported in `similar_to` (see
  `similar.py`; items of the same batch do not see each other there).
Per item a result or the ClarityError that item would raise on its own (that item changed nothing).
An item may be a JSON object (parsed here) or a StoreRequest parsed in this process (taken as is). An
exception raised here means no item was acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clarity import timings
from clarity.engines.base import Engine, Point
from clarity.errors import ClarityError, InvalidArgument
from clarity.memory import model as m
from clarity.memory import records
from clarity.memory.arguments import parse_args
from clarity.memory.results import StoreResult
from clarity.memory.similar import similar_memories

if TYPE_CHECKING:
    from clarity.config import MemorySettings
    from clarity.encoders.dense import Embedder

Answer = StoreResult | ClarityError


@dataclass
class _New:
    """A memory this batch writes: its item, its point, and the memory it supersedes (if any)."""

    item: int
    point: Point
    replaces: Point | None


def find_duplicate(engine: Engine, memory_type: str, content_hash: str) -> Point | None:
    """A stored memory with this type and content hash (indexed lookup), if any."""
    found = engine.find({"memory_type": memory_type, "content_hash": content_hash}, 1)
    return found[0] if found else None


def parse_item(args: object, limits: MemorySettings) -> m.StoreRequest:
    """One store's arguments as a StoreRequest whose content is within the limits, or InvalidArgument."""
    req = parse_args(m.StoreRequest, args)
    m.check_content(req.content, limits.max_content_bytes)
    return req


def store_batch(engine: Callable[[], Engine], embedder: Embedder, limits: MemorySettings,
                batch: Sequence[m.Args]) -> list[Answer]:
    """See the module docstring. `engine()` gives the open engine (called only when an item is valid);
    the caller serializes operations (holds the service lock)."""
    out: list[Answer] = []
    reqs: list[tuple[int, m.StoreRequest, str]] = []
    for i, args in enumerate(batch):
        try:
            req = parse_item(args, limits)
        except ClarityError as e:
            out.append(e)
            continue
        out.append(InvalidArgument("unanswered"))  # replaced below
        reqs.append((i, req, m.content_hash(req.content)))
    if not reqs:
        return out
    eng = engine()
    targets = {r.supersedes for _, r, _ in reqs if r.supersedes}
    stored = {p.id: p for p in eng.retrieve(list(dict.fromkeys([r.id for _, r, _ in reqs] + sorted(targets))),
                                            with_vectors=bool(targets))}
    new: dict[str, _New] = {}  # id -> memory written by this batch
    by_hash: dict[tuple[str, str], Point] = {}  # (type, hash) -> point written by this batch
    successor: dict[str, str] = {}  # id -> the id of the item of this batch that supersedes it
    ts = records.now_iso()
    for i, req, h in reqs:
        known = new[req.id].point if req.id in new else stored.get(req.id)
        if known is not None:
            if known.payload.get("content_hash") == h and known.payload.get("memory_type") == req.memory_type:
                out[i] = records.existing(known)
            else:
                out[i] = InvalidArgument(f"id {req.id} is already used by another memory")
            continue
        dup = by_hash.get((req.memory_type, h)) or find_duplicate(eng, req.memory_type, h)
        if dup is not None:
            out[i] = records.duplicate(dup)
            continue
        replaces = None
        if req.supersedes:
            try:
                replaces = _replaced(req.supersedes, new, stored, successor)
            except ClarityError as e:
                out[i] = e
                continue
            successor[replaces.id] = req.id
        point = Point(id=req.id, payload=records.new_payload(req, h, ts, replaces.id if replaces else None),
                      vector=[])
        new[req.id] = _New(i, point, replaces)
        by_hash[(req.memory_type, h)] = point
    if not new:
        return out
    written = list(new.values())
    vectors = embedder.embed([w.point.payload["content"] for w in written])
    for w, vector in zip(written, vectors, strict=True):
        w.point.vector = vector
    answers: dict[int, StoreResult] = {}
    for w in written:  # the memories superseded by this item and the items before it count as superseded
        skip = {old for old, by in successor.items() if new[by].item <= w.item}
        answers[w.item] = records.stored(w.point, similar_memories(eng, w.point, limits.similar_threshold, skip))
    # built after the embedding: an old memory written by this batch has its vector by now
    replaced = [records.superseded(w.replaces, w.point.id) for w in written if w.replaces is not None]
    t0 = time.perf_counter()
    eng.upsert([w.point for w in written])
    if replaced:  # after the new ones: a kill in between leaves one-sided chains, no loss
        eng.upsert(replaced)
    timings.record("engine", time.perf_counter() - t0)
    for item, answer in answers.items():
        out[item] = answer
    return out


def _replaced(memory_id: str, new: dict[str, _New], stored: dict[str, Point], successor: dict[str, str]) -> Point:
    """The memory `supersedes=memory_id` replaces, or the InvalidArgument a store would raise."""
    found = new[memory_id].point if memory_id in new else stored.get(memory_id)
    if found is None:
        raise InvalidArgument(f"supersedes: no memory with id {memory_id}")
    by = successor.get(memory_id) or found.payload.get("superseded_by")
    if by:
        raise InvalidArgument(f"supersedes: memory {memory_id} is already superseded by {by}")
    return found

