"""Payloads and results, built in one place.

Payloads (what the engine stores for a memory): `new_payload` (a store), `updated_payload` (an update),
`imported_payload` (an import, which keeps ids, timestamps and chain links), `superseded` (the memory a
store supersedes, pointing to its successor). Results (what an operation answers, as the result models
of `clarity.memory.results`): `memory` (the Memory view of a stored point), `stored` / `existing` /
`duplicate` (a store), `retrieved`, `listed`, `updated`, `deleted`, `stats`, `exported`, `imported`,
`backed_up`; `dump` turns any of them into the JSON-able dict the service sends.

Guarantees of the JSON: an optional key of a memory that is not set (`content` or `metadata` and
`context` where the call did not ask for them, `similarity` outside retrieve, `supersedes` and
`superseded_by` where empty) is left out, never null; similarities are rounded to 6 decimals; a
store's `duplicate_of` is null when the memory was stored. Timestamps are ISO 8601 in UTC with
microseconds (`now_iso`), so they sort as text in the order they were taken.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from clarity.engines.base import Point
from clarity.memory import model as m
from clarity.memory.results import (
    BackupResult,
    DeleteResult,
    ExportResult,
    ImportResult,
    ListResult,
    Memory,
    RetrieveResult,
    SimilarMemory,
    StatsResult,
    StoreResult,
    UpdateResult,
)
from clarity.memory.suspicion import flag_reason

# what an import takes from an exported memory to parse it as a store (timestamps and chain links are
# taken by `imported_payload`; its origin is the import's: see `entered`)
IMPORTED_FIELDS = ("id", "content", "memory_type", "importance", "tags", "metadata", "context", "session",
                   "supersedes")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def iso_or_now(value: object) -> str:
    """`value` if it is an ISO 8601 timestamp with a time zone (engines order by it), else now."""
    if isinstance(value, str):
        try:
            if datetime.fromisoformat(value).tzinfo is not None:
                return value
        except ValueError:
            pass
    return now_iso()


# ---- payloads --------------------------------------------------------------------------------


def flag(payload: Mapping[str, Any]) -> str | None:
    """Why the memory `payload` reads like an instruction to an agent (`clarity.memory.suspicion`), looking
    at its content, then its tags, metadata and context (every one of them is shown to agents), or None."""
    reason = flag_reason(str(payload.get("content", "")))
    if reason is None:
        rest = [*payload.get("tags", []), *_strings(payload.get("metadata")), *_strings(payload.get("context"))]
        if rest:
            reason = flag_reason("\n".join(rest))
            if reason is not None:
                reason = f"in its tags, metadata or context: {reason}"
    return reason


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)


def with_flag(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with its `flagged` reason set from its text as it is now: null when there is none and the
    payload had one (null, unlike "", is empty to the `is_empty` filters; a partial update can write it). A
    person's review of an earlier flag (`flag_reviewed`) was of the earlier text: it is cleared too."""
    reason = flag(payload)
    if reason is not None:
        payload["flagged"] = reason
    elif "flagged" in payload:
        payload["flagged"] = None
    if payload.get("flag_reviewed"):
        payload["flag_reviewed"] = None
    return payload


def reviewed(payload: Mapping[str, Any], ts: str) -> dict[str, Any] | None:
    """The keys a person's review of the flagged memory `payload` changes (its flag becomes
    `flag_reviewed`, so the memory is shown like any other), or None when it is not flagged."""
    reason = payload.get("flagged") or (flag(payload) if "origin" not in payload else None)
    if not reason:
        return None
    return {"flagged": None, "flag_reviewed": f"{reason} (reviewed {ts[:19]}Z)", "updated_at": ts}


def entered(payload: dict[str, Any], origin: str, detail: str) -> dict[str, Any]:
    """`payload` marked as entered by `origin` (`detail`: a short note: an import's file, a hook's event);
    the origin it claimed before (an exported memory's, a backup record's) is kept in the detail."""
    before = payload.get("origin")
    note = detail
    if isinstance(before, str) and before and before != origin:
        earlier = payload.get("origin_detail")
        was = f"was {before}" + (f" ({earlier})" if isinstance(earlier, str) and earlier else "")
        note = f"{detail}; {was}" if detail else was
    payload["origin"] = origin
    note = m.detail_line(note)
    if note:
        payload["origin_detail"] = note
    else:
        payload.pop("origin_detail", None)
    return payload


def new_payload(req: m.StoreRequest, content_hash: str, ts: str, supersedes: str | None = None) -> dict[str, Any]:
    """The payload of the memory `req` stores at `ts` (`supersedes`: the id of the memory it replaces):
    with its origin, and flagged when its text reads like an instruction to an agent."""
    payload: dict[str, Any] = {
        "content": req.content, "memory_type": req.memory_type, "importance": req.importance,
        "tags": req.tags, "metadata": req.metadata, "context": req.context,
        "created_at": ts, "updated_at": ts, "content_hash": content_hash, "session": req.session,
        "origin": req.origin,
    }
    if req.origin_detail:
        payload["origin_detail"] = req.origin_detail
    if supersedes is not None:
        payload["supersedes"] = supersedes
    return with_flag(payload)


def superseded(p: Point, by: str) -> Point:
    """`p` as it is written once memory `by` supersedes it (a new Point: `p` is left as it is)."""
    return Point(id=p.id, payload={**p.payload, "superseded_by": by}, vector=p.vector, sparse=p.sparse)


def updated_payload(payload: Mapping[str, Any], changes: Mapping[str, Any], ts: str,
                    content_hash: str | None) -> dict[str, Any]:
    """`payload` with `changes` applied at `ts` (`content_hash`: the new content's, when it changed)."""
    out = dict(payload)
    out.update(changes)
    if content_hash is not None:
        out["content_hash"] = content_hash
    out["updated_at"] = ts
    return with_flag(out) if changes.keys() & {"content", "tags", "metadata", "context"} else out


def imported_payload(item: Mapping[str, Any], req: m.StoreRequest, source: str = "") -> dict[str, Any]:
    """The payload of an exported memory `item` (parsed as `req`): its own timestamps when they are
    ISO 8601 with a time zone (else now; `updated_at` defaults to `created_at`) and its chain links;
    origin `import` (`source`: where from), flagged from its text (whatever the file says)."""
    payload = req.model_dump(exclude={"id", "supersedes", "origin", "origin_detail"})
    for key in ("supersedes", "superseded_by"):
        if isinstance(item.get(key), str) and item[key]:
            payload[key] = item[key]
    payload["content_hash"] = m.content_hash(req.content)
    payload["created_at"] = iso_or_now(item.get("created_at"))
    updated = item.get("updated_at")
    payload["updated_at"] = iso_or_now(updated) if updated else payload["created_at"]
    claimed = {k: item[k] for k in ("origin", "origin_detail") if isinstance(item.get(k), str)}
    return with_flag(entered({**payload, **claimed}, "import", source))


# ---- results ---------------------------------------------------------------------------------


def memory(p: Point, *, content: bool = True, meta: bool = True) -> Memory:
    """The Memory view of the stored point `p` (`content`, `metadata` and `context` only when asked for;
    `similarity`, the dense cosine with the query, when `p` is a search hit)."""
    pl = p.payload
    cos = p.extra.get("cosine", p.score)
    flagged = pl.get("flagged") or None
    if "origin" not in pl and "flag_reviewed" not in pl and content:  # stored before flags: judged as read
        flagged = flag(pl)
    return Memory(
        id=p.id, memory_type=pl.get("memory_type", "note"), importance=pl.get("importance", 0.5),
        tags=pl.get("tags", []), created_at=pl.get("created_at", ""), updated_at=pl.get("updated_at", ""),
        content_hash=pl.get("content_hash", ""), session=pl.get("session", ""),
        origin=pl.get("origin", ""), origin_detail=pl.get("origin_detail") or None, flagged=flagged,
        content=pl.get("content", "") if content else None,
        metadata=pl.get("metadata", {}) if meta else None,
        context=pl.get("context", {}) if meta else None,
        supersedes=pl.get("supersedes") or None, superseded_by=pl.get("superseded_by") or None,
        similarity=None if cos is None else round(cos, 6),
    )


def similar_to(hits: Iterable[Point]) -> list[SimilarMemory]:
    """A store's `similar_to` from the hits of `similar.similar_memories`."""
    out = []
    for p in hits:
        cos = p.extra.get("cosine")
        out.append(SimilarMemory(id=p.id, similarity=round(float(cos if cos is not None else p.score or 0.0), 6)))
    return out


def stored(p: Point, similar: Iterable[Point] = ()) -> StoreResult:
    """A store that wrote the new memory `p` (`similar`: its near-copies stored before)."""
    return StoreResult(id=p.id, stored=True, duplicate_of=None, created_at=p.payload.get("created_at", ""),
                         similar_to=similar_to(similar))


def existing(p: Point) -> StoreResult:
    """A store whose id is already stored with the same content and type: `p`, as when it was stored."""
    return stored(p)


def duplicate(p: Point) -> StoreResult:
    """A store of the content and type of the stored memory `p`: nothing written, `duplicate_of` = `p`."""
    return StoreResult(id=p.id, stored=False, duplicate_of=p.id, created_at=p.payload.get("created_at", ""),
                         similar_to=[])


def retrieved(req: m.RetrieveRequest, min_similarity: float, hits: Iterable[Point]) -> RetrieveResult:
    memories = [memory(p, meta=req.include_metadata) for p in hits]
    return RetrieveResult(query=req.query, mode=req.mode, min_similarity=min_similarity, count=len(memories),
                            memories=memories)


def listed(req: m.ListRequest, total: int, page: Iterable[Point]) -> ListResult:
    memories = [memory(p, content=req.include_content, meta=req.include_content) for p in page]
    return ListResult(total=total, offset=req.offset, limit=req.limit, memories=memories)


def updated(memory_id: str, changes: Collection[str], reembedded: bool, ts: str) -> UpdateResult:
    return UpdateResult(id=memory_id, updated_fields=sorted(changes), reembedded=reembedded, updated_at=ts)


def deleted(ids: Iterable[str], found: Collection[str]) -> DeleteResult:
    """`ids` (each once, in order) split into those that were stored (deleted) and the others."""
    ids = list(ids)
    return DeleteResult(deleted=[i for i in ids if i in found], not_found=[i for i in ids if i not in found])


def stats(*, total: int, by_type: Mapping[str, int], engine: str, model: str, dims: int, storage_bytes: int,
          home: Path, index_state: Mapping[str, Any]) -> StatsResult:
    """The store's figures; `index_state` is the engine's (`written_since_build`, `building`; empty for
    an engine without a background index build). `served_by_pid` is this process."""
    return StatsResult(
        total=total, by_type=dict(sorted(by_type.items())), engine=engine, model=model, dims=dims,
        storage_bytes=storage_bytes, home=str(home), unindexed=int(index_state.get("written_since_build", 0)),
        index_building=bool(index_state.get("building")), served_by_pid=os.getpid(),
    )


def exported(model: str, points: Iterable[Point], with_vectors: bool) -> ExportResult:
    """Every point as `{"id", **payload}` (plus `vector`), oldest first (by `created_at`, then id)."""
    memories = []
    for p in sorted(points, key=lambda p: (p.payload.get("created_at", ""), p.id)):
        item = {"id": p.id, **p.payload}
        if with_vectors:
            item["vector"] = p.vector
        memories.append(item)
    return ExportResult(model=model, count=len(memories), memories=memories)


def imported(count: int, skipped: int) -> ImportResult:
    return ImportResult(imported=count, skipped=skipped)


def backed_up(path: Path, count: int) -> BackupResult:
    return BackupResult(file=str(path), count=count, bytes=path.stat().st_size)


# The service's JSON keeps the key order it has always had (what `clarity ... --json` prints and the
# owner's socket carries); the models' field order is the MCP tools' (their answers and output schemas).
_MEMORY_KEYS = ("id", "memory_type", "importance", "tags", "created_at", "updated_at", "content_hash", "session",
                "origin", "origin_detail", "flagged", "content", "metadata", "context", "supersedes", "superseded_by",
                "similarity")
_STATS_KEYS = ("total", "by_type", "engine", "model", "dims", "storage_bytes", "home", "unindexed",
               "index_building", "served_by_pid")


def _ordered(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: d[k] for k in keys if k in d}, **{k: v for k, v in d.items() if k not in keys}}


def dump(result: BaseModel) -> dict[str, Any]:
    """The JSON-able dict of an operation's result (what `MemoryService.execute` answers)."""
    if isinstance(result, ExportResult):  # the stored payloads are plain JSON already: not copied again
        return {**result.model_dump(exclude={"memories"}), "memories": result.memories}
    out = result.model_dump()
    if isinstance(result, Memory):
        return _ordered(out, _MEMORY_KEYS)
    if isinstance(result, RetrieveResult | ListResult):
        out["memories"] = [_ordered(x, _MEMORY_KEYS) for x in out["memories"]]
    elif isinstance(result, StatsResult):
        return _ordered(out, _STATS_KEYS)
    return out
