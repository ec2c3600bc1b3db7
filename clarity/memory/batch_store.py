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

Over a shared engine (a Qdrant server: `engine.exclusive` is False, no owner puts the sessions' calls in
order) the same answers hold when sessions race, through the server rather than a read before a write:
- a memory's id is derived from its content (`content_id`: uuid5 of its type and content hash; the
  caller's id when that one is taken by a memory whose content was updated since, or by an earlier item
  of the batch) and written with `Engine.insert` (insert-only): sessions storing one content at once
  write one point; each then reads it back, and the one whose write is there answers `stored`, the
  others `duplicate_of` it (told apart by `created_at` and `session`: two sessions named alike in the
  same microsecond would both answer `stored`, still one point). A store of content already stored
  answers `duplicate_of` it, also when it repeats a call whose answer was lost (the server retries
  below this module repeat the same insert, which is idempotent).
- `supersedes` is applied by `Engine.mark_superseded` (a conditional write: only while the old memory
  has no successor). The session that loses the race deletes the memory it had just written and
  answers InvalidArgument "already superseded" (that memory was visible to readers for that moment).
An item may be a JSON object (parsed here) or a StoreRequest parsed in this process (taken as is). An
exception raised here means no item was acknowledged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clarity import timings
from clarity.engines.base import Engine, Point
from clarity.errors import ClarityError, InvalidArgument
from clarity.memory import model as m
from clarity.memory import records
from clarity.memory.arguments import parse_args
from clarity.memory.indexed_text import dense_text, sparse_vector
from clarity.memory.results import StoreResult
from clarity.memory.similar import similar_memories

if TYPE_CHECKING:
    from clarity.config import MemorySettings
    from clarity.encoders.dense import Embedder

Answer = StoreResult | ClarityError
CONTENT_IDS = uuid.UUID("6c1a7f0e-3d2b-5a8e-9f41-c1a21e7d0b55")  # the namespace of content-derived ids


def content_id(memory_type: str, content_hash: str) -> str:
    """The id of a memory of this type and content in a shared store (the same in every session)."""
    return str(uuid.uuid5(CONTENT_IDS, f"{memory_type}\n{content_hash}"))


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


def store_text(args: object) -> str | None:
    """The text a store of `args` (a StoreRequest, or its JSON object) will embed if it writes a memory,
    without parsing it: for starting that embedding ahead (`Embedder.start_early`). None when it cannot
    tell: no content string, or content with `<private>` text (a parse strips it)."""
    if isinstance(args, m.StoreRequest):
        content: object = args.content
        context: object = args.context
    elif isinstance(args, dict):
        content, context = args.get("content"), args.get("context")
    else:
        return None
    if not isinstance(content, str) or not content.strip() or "<private>" in content.lower():
        return None
    return dense_text({"content": content, "context": context if isinstance(context, dict) else None})


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
    if not eng.exclusive:
        reqs = _content_ids(eng, reqs)
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
                # over a shared engine the id is the content's: a stored one is an earlier store's
                out[i] = records.existing(known) if eng.exclusive else records.duplicate(known)
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
    vectors = embedder.embed([dense_text(w.point.payload) for w in written])
    for w, vector in zip(written, vectors, strict=True):
        w.point.vector, w.point.sparse = vector, sparse_vector(w.point.payload)
    answers: dict[int, Answer] = {}
    for w in written:  # the memories superseded by this item and the items before it count as superseded
        skip = {old for old, by in successor.items() if new[by].item <= w.item}
        answers[w.item] = records.stored(w.point, similar_memories(eng, w.point, limits.similar_threshold, skip))
    # built after the embedding: an old memory written by this batch has its vector by now
    replaced = [records.superseded(w.replaces, w.point.id) for w in written if w.replaces is not None]
    t0 = time.perf_counter()
    if not eng.exclusive:
        _write_shared(eng, written, answers)
    else:
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



def _content_ids(eng: Engine, reqs: list[tuple[int, m.StoreRequest, str]]) -> list[tuple[int, m.StoreRequest, str]]:
    """Each request with its content-derived id (see the module docstring), or its own id when that one
    is taken by other content or by an earlier item with the same content (then a `duplicate_of`)."""
    ids = [content_id(r.memory_type, h) for _, r, h in reqs]
    taken = {p.id: p for p in eng.retrieve(list(dict.fromkeys(ids)))}
    out, seen = [], set()
    for (i, req, h), cid in zip(reqs, ids, strict=True):
        p = taken.get(cid)
        other = p is not None and (p.payload.get("content_hash"), p.payload.get("memory_type")) != (h, req.memory_type)
        if not other and cid not in seen:
            req = req.model_copy(update={"id": cid})
        seen.add(cid)
        out.append((i, req, h))
    return out


def _write_shared(eng: Engine, written: list[_New], answers: dict[int, Answer]) -> None:
    """The writes of a batch over a shared engine: insert-only, read back, then the conditional
    supersedes (see the module docstring)."""
    eng.insert([w.point for w in written])
    landed = {p.id: p for p in eng.retrieve([w.point.id for w in written])}
    for w in written:
        p, mine = landed.get(w.point.id), w.point.payload
        if p is None or (p.payload.get("created_at"), p.payload.get("session")) == (mine["created_at"],
                                                                                   mine.get("session")):
            continue  # ours (or already deleted by another session: it was stored)
        w.replaces = None
        if (p.payload.get("content_hash"), p.payload.get("memory_type")) == (mine["content_hash"],
                                                                             mine["memory_type"]):
            answers[w.item] = records.duplicate(p)  # another session stored this content first
        else:
            answers[w.item] = InvalidArgument(f"id {w.point.id} is already used by another memory")
    for w in written:
        if w.replaces is None:
            continue
        holder = eng.mark_superseded(w.replaces.id, w.point.id)
        if holder != w.point.id:
            eng.delete([w.point.id])
            answers[w.item] = InvalidArgument(
                f"supersedes: memory {w.replaces.id} is already superseded by {holder}" if holder else
                f"supersedes: no memory with id {w.replaces.id} (deleted meanwhile)")
