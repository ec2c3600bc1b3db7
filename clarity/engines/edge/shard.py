"""The Edge shard on disk: its layout (vectors, payload indexes), filters and payload encoding, how it is
opened (`open_shard`, which raises `EngineLocked` when another process holds its WAL) and the one-time
BM25 backfill of older stores (`backfill_sparse`). Pure functions over `qdrant_edge`;
`clarity.engines.edge.engine.EdgeEngine` is the Engine built on them. Which folder holds the current
shard: `clarity.engines.edge.layout`; how its HNSW index is built: `clarity.engines.edge.build`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from clarity.encoders.sparse import encode_document
from clarity.engines.base import Filter, Point
from clarity.errors import EngineLocked

log = logging.getLogger(__name__)

DENSE = "dense"
SPARSE = "bm25"
# superseded_by is indexed for the `is_empty` filter every default read carries: unindexed, it scanned the
# whole store (count 225 ms, filtered search 190 ms at 100k); indexed 14 ms / 10 ms
KEYWORD_FIELDS = ("memory_type", "tags", "content_hash", "session", "superseded_by", "origin", "flagged")
DATETIME_FIELDS = ("created_at",)
SIZE_CACHE_S = 10.0
TIE_CAP = 10_000
BACKFILL_BATCH = 256
BM25_COMPLETE = "clarity-bm25-complete"  # in the shard folder: every point written has had its chance at BM25
# an index build's generation carries `INDEX_LAYOUT_FILE` with the layout it wrote (2: every part mapped from
# disk, see edge_config); an indexed generation of an older layout is rebuilt once (clarity.engines.edge.engine)
INDEX_LAYOUT = 2
INDEX_LAYOUT_FILE = "clarity-index-layout"


def edge_dir(qdrant_path: Path) -> Path:
    """The base path of the shard inside `<home>/qdrant/` (beside the legacy files and the coordination
    folder): generation 0; the current generation is `edge_layout.current_dir(edge_dir(...))`."""
    return qdrant_path / "edge"


def edge_config(dim: int, indexing: bool = False) -> Any:
    """The shard's configuration. `max_search_threads=1`: a search uses one core, leaving the other to an
    index build's child and to other sessions. Latency, measured at 100k on a 2-core machine: HNSW
    2.3 ms vs 5.3 ms with the default pool on a quiet machine; on a busy one (load 5-7) no difference
    either way (HNSW p50 2.7 vs 2.5 ms, exact 14-27 ms both).
    Every part is mapped from disk, not loaded (`Memory.Cold`: dense vectors, HNSW graph, sparse index, id
    tracker; payload indexes in `open_shard`), so opening a shard (a failover's new owner) does not read
    or rebuild them; the standby keeps their files in the page cache. Measured on the same 100k points,
    warm page cache, 3 loads each: 381-440 ms with Edge's defaults (in RAM), 78-97 ms mapped; search
    p50 0.8-1.4 ms both ways. The settings are stored per segment when a segment is written: an index
    build writes them into every segment of the new generation (`INDEX_LAYOUT`).
    `indexing`: the settings an index build (`edge_build`) writes its segments with: one indexing
    thread (a core stays free for serving), and HNSW whatever the size (tests build small stores)."""
    import qdrant_edge as q

    cold = q.Memory.Cold
    hnsw = q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000, max_indexing_threads=1,
                             memory=cold)
    return q.EdgeConfig(
        vectors={DENSE: q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine, memory=cold)},
        sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf, memory=cold)},
        hnsw_config=hnsw if indexing else None,
        optimizers=q.EdgeOptimizersConfig(indexing_threshold=1) if indexing else None,  # KB: index any size
        max_search_threads=1,
        id_tracker_memory=cold,
    )


def to_filter(flt: Filter | None) -> Any:
    import qdrant_edge as q

    must: list[Any] = []
    must_not: list[Any] = []
    for key, value in (flt or {}).items():
        if value is None:
            continue
        if isinstance(value, dict):
            if "is_empty" in value:
                (must if value["is_empty"] else must_not).append(q.IsEmptyCondition(key))
            else:
                must.append(q.FieldCondition(key, range=q.RangeDateTime(gte=value.get("gte"), lte=value.get("lte"))))
        elif isinstance(value, list | tuple | set):
            must.append(q.FieldCondition(key, match=q.MatchAny([str(v) for v in value])))
        else:
            must.append(q.FieldCondition(key, match=q.MatchValue(value)))
    return q.Filter(must=must or None, must_not=must_not or None) if must or must_not else None


def _dense(vec: Any) -> list[float] | None:
    if vec is None:
        return None
    if isinstance(vec, dict):
        v = vec.get(DENSE)
        return list(v) if v is not None else None
    return list(vec)


# Free-form JSON payload fields are stored as JSON text: Edge parses payload floats without exact
# round-tripping (about 1 random float in 9 came back one ulp off), and a memory's metadata must come
# back exactly as it was stored. Nothing filters on these fields, so nothing is lost by that.
# This is the one encoding of a payload written into a shard: the engine's upsert, restore and the
# migration all go through `_to_edge_payload` (`edge_point`); an index build copies payloads as Edge
# returns them, i.e. already encoded, and must not encode them again.
OPAQUE_KEYS = ("metadata", "context")


def _to_edge_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` as it is written into the shard: every opaque field as JSON text (a text value too,
    so that reading it back cannot mistake it for JSON: "5" is stored as '"5"')."""
    out = dict(payload)
    for key in OPAQUE_KEYS:
        if key in out:
            out[key] = orjson.dumps(out[key]).decode()
    return out


def _from_edge_payload(payload: dict[str, Any]) -> dict[str, Any]:
    for key in OPAQUE_KEYS:
        value = payload.get(key)
        if isinstance(value, str):
            try:
                payload[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                pass  # not written by this engine: leave it as stored
    return payload


def _point(rec: Any, with_vectors: bool = False, score: float | None = None) -> Point:
    return Point(id=str(rec.id), payload=_from_edge_payload(dict(rec.payload or {})),
                 vector=_dense(rec.vector) if with_vectors else None, score=score)


def edge_vectors(dense: Sequence[float] | None, payload: dict[str, Any],
                 sparse: tuple[list[int], list[float]] | None = None) -> dict[str, Any]:
    """The named vectors of a point: `dense`, and `bm25` from `sparse` or else from the content."""
    import qdrant_edge as q

    out: dict[str, Any] = {DENSE: list(dense or [])}
    sv = sparse if sparse is not None else encode_document(str(payload.get("content", "")))
    if sv is not None:
        out[SPARSE] = q.SparseVector(sv[0], sv[1])
    return out


def edge_point(point_id: str, dense: Sequence[float] | None, payload: dict[str, Any],
               sparse: tuple[list[int], list[float]] | None = None) -> Any:
    """The Edge point of a memory: its vectors (`edge_vectors`) and its payload in the engine's encoding
    (`_to_edge_payload`). `payload` is a memory's payload as the engine's readers return it (decoded)."""
    import qdrant_edge as q

    return q.Point(point_id, edge_vectors(dense, payload, sparse), _to_edge_payload(payload))


def backfill_sparse(shard: Any) -> int:
    """Give every point without a `bm25` vector one (from its content); returns how many got one.
    Points whose content has no indexable term are skipped (they stay without)."""
    import qdrant_edge as q

    missing = q.Filter(must_not=[q.HasVectorCondition(SPARSE)])
    done, cursor, seen = 0, None, 0
    while True:
        recs, cursor = shard.scroll(q.ScrollRequest(offset=cursor, limit=BACKFILL_BATCH, filter=missing,
                                                    with_payload=True))
        seen += len(recs)
        upd = []
        for r in recs:
            sv = encode_document(str((r.payload or {}).get("content", "")))
            if sv is not None:
                upd.append(q.PointVectors(r.id, {SPARSE: q.SparseVector(sv[0], sv[1])}))
        if upd:
            shard.update(q.UpdateOperation.update_vectors(upd))
            done += len(upd)
        if cursor is None:
            break
    if done:
        shard.flush()
        log.info("added BM25 vectors to %d of %d older points", done, seen)
    return done


def _disk_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def open_shard(path: Path, dim: int, indexing: bool = False) -> Any:
    """Load the shard at `path` (create it if it has no segments), with every payload index."""
    import qdrant_edge as q

    cfg = edge_config(dim, indexing)
    try:
        if (path / "segments").is_dir() and any((path / "segments").iterdir()):
            shard = q.EdgeShard.load(str(path), cfg)
        else:
            shard = q.EdgeShard.create(str(path), cfg)
    except Exception as e:
        if "WouldBlock" in str(e):
            raise EngineLocked(f"the Edge shard {path} is open in another process") from None
        if "ncompatible" in str(e) or "dimension" in str(e).lower():
            raise ValueError(f"the store at {path} does not match {dim}-dim vectors: {e}") from e
        raise
    have = set(shard.info().payload_schema)
    for name in KEYWORD_FIELDS:  # mapped from disk (see edge_config): loading them was most of an open
        if name not in have:
            shard.update(q.UpdateOperation.create_field_index(name, q.KeywordIndexParams(memory=q.Memory.Cold)))
    for name in DATETIME_FIELDS:
        if name not in have:
            shard.update(q.UpdateOperation.create_field_index(name, q.DatetimeIndexParams(memory=q.Memory.Cold)))
    return shard


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
