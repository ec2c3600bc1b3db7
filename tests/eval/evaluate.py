"""Run the evaluation set through a real MemoryService (real engine, real model) and through BM25.

`load_into(service, memories)` imports the memories under fixed ids; `dense_rankings()` asks the
service's `retrieve` (limit 5, min_similarity -1, so nothing is cut by the threshold) for every
question, passing `mode` through when the service accepts it; `supported_modes()` detects that by a
probe (today's service rejects the unknown `mode` field: only its dense search, called "semantic",
is evaluated). `bm25_rankings()` ranks the same memories with `bm25.BM25`. `score()` turns rankings
into per-category figures, `near_duplicate_report()` measures cosine similarity of text pairs with the
service's embedding model. Nothing here asserts: callers decide what is good enough.

Figures, per category and over all questions (each a mean over questions, in [0, 1]):
  hit@1     the first result is one of the answers
  hit@5     at least one answer is among the first five
  recall@5  answers found in the first five / min(len(answers), 5)
  mrr@5     1 / rank of the first answer within five (0 when none)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from clarity.encoders.sparse import DEFAULT_TOKENIZER, Tokenizer, encode_document, encode_query
from clarity.engines.base import Point, SearchQuery
from clarity.errors import InvalidArgument
from clarity.memory import model as m
from clarity.memory.indexed_text import sparse_text
from clarity.memory.ranking import CANDIDATE_FACTOR, rerank
from clarity.memory.service import MemoryService
from tests.eval.bm25 import BM25
from tests.eval.data import CATEGORIES, Memory, Pair, Question, uuid_for

K = 5
Rankings = dict[str, list[str]]  # question id -> memory slugs, best first


def load_into(service: MemoryService, memories: Sequence[Memory]) -> dict[str, str]:
    """Import `memories` into `service` under `uuid_for(slug)`; returns uuid -> slug."""
    items = [{"id": uuid_for(m.id), "content": m.content, "memory_type": m.memory_type, "tags": m.tags}
             for m in memories]
    result = service.execute("import", {"memories": items})
    if result["imported"] + result["skipped"] != len(items):
        raise RuntimeError(f"import stored {result} of {len(items)} memories")
    return {uuid_for(m.id): m.id for m in memories}


def supported_modes(service: MemoryService, wanted: Sequence[str]) -> list[str | None]:
    """The modes of `wanted` that `retrieve` accepts; `[None]` when it has no `mode` argument at all
    (then only its one (dense) search exists and is evaluated without a mode)."""
    ok: list[str | None] = []
    for mode in wanted:
        try:
            service.execute("retrieve", {"query": "probe", "limit": 1, "min_similarity": -1.0, "mode": mode})
        except InvalidArgument:
            continue
        ok.append(mode)
    return ok or [None]


def dense_rankings(service: MemoryService, questions: Sequence[Question], by_uuid: dict[str, str],
                   mode: str | None = None) -> Rankings:
    out: Rankings = {}
    for q in questions:
        args: dict[str, Any] = {"query": q.query, "limit": K, "min_similarity": -1.0}
        if mode is not None:
            args["mode"] = mode
        res = service.execute("retrieve", args)
        out[q.id] = [by_uuid.get(m["id"], m["id"]) for m in res["memories"]]
    return out


def bm25_rankings(memories: Sequence[Memory], questions: Sequence[Question]) -> Rankings:
    index = BM25([(m.id, m.content) for m in memories])
    return {q.id: index.search(q.query, K) for q in questions}


def _figures(questions: Sequence[Question], ranks: Rankings) -> dict[str, float]:
    n = len(questions)
    if n == 0:
        return {"n": 0, "hit@1": 0.0, "hit@5": 0.0, "recall@5": 0.0, "mrr@5": 0.0}
    hit1 = hit5 = rec = mrr = 0.0
    for q in questions:
        got = ranks.get(q.id, [])[:K]
        answers = set(q.answers)
        found = [i for i, slug in enumerate(got) if slug in answers]
        hit1 += 1.0 if got and got[0] in answers else 0.0
        hit5 += 1.0 if found else 0.0
        rec += len(found) / min(len(answers), K)
        mrr += 1.0 / (found[0] + 1) if found else 0.0
    return {"n": n, "hit@1": round(hit1 / n, 4), "hit@5": round(hit5 / n, 4),
            "recall@5": round(rec / n, 4), "mrr@5": round(mrr / n, 4)}


def score(questions: Sequence[Question], ranks: Rankings) -> dict[str, dict[str, float]]:
    """Figures per category present in `questions`, plus "all"."""
    out = {c: _figures([q for q in questions if q.category == c], ranks) for c in CATEGORIES
           if any(q.category == c for q in questions)}
    out["all"] = _figures(questions, ranks)
    return out


def first_rank(q: Question, ranks: Rankings) -> int | None:
    """1-based rank of the first answer within the first K results, None when absent."""
    for i, slug in enumerate(ranks.get(q.id, [])[:K]):
        if slug in q.answers:
            return i + 1
    return None


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _dist(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4), "mean": round(statistics.fmean(values), 4)}


def near_duplicate_report(service: MemoryService, pairs: Sequence[Pair]) -> dict[str, Any]:
    """Cosine similarity of each pair with the service's model, the distribution per kind, and
    thresholds: `best_accuracy` maximizes correctly classified pairs (ties: the highest such value),
    `no_false_flags` is the lowest value above every related pair."""
    texts = [t for p in pairs for t in (p.a, p.b)]
    vecs = service.embedder.embed(texts)
    sims = {p.id: round(_cos(vecs[2 * i], vecs[2 * i + 1]), 4) for i, p in enumerate(pairs)}
    dup = [sims[p.id] for p in pairs if p.kind == "near_duplicate"]
    rel = [sims[p.id] for p in pairs if p.kind == "related"]
    candidates = sorted(set(dup + rel))
    best_t, best_ok = 1.0, -1
    for t in candidates:
        ok = sum(s >= t for s in dup) + sum(s < t for s in rel)
        if ok >= best_ok:
            best_t, best_ok = t, ok
    strict = round(max(rel) + 0.0001, 4)
    return {
        "near_duplicate": _dist(dup), "related": _dist(rel),
        "best_accuracy": {"threshold": best_t, "correct": best_ok, "of": len(dup) + len(rel),
                          "near_duplicates_caught": sum(s >= best_t for s in dup),
                          "related_flagged": sum(s >= best_t for s in rel)},
        "no_false_flags": {"threshold": strict, "near_duplicates_caught": sum(s >= strict for s in dup)},
        "pairs": [{"id": p.id, "kind": p.kind, "similarity": sims[p.id]} for p in pairs],
    }


@dataclass(frozen=True)
class Variant:
    """One way to run hybrid retrieval: the fusion of its two branches (`SearchQuery.fusion`, `rrf_k`),
    the BM25 tokenizer of stored and query vectors, the `min_similarity` (None: the configured default)
    and the mode."""

    name: str
    fusion: Literal["dbsf", "rrf"] = "dbsf"
    rrf_k: int = 60
    tokenizer: Tokenizer = DEFAULT_TOKENIZER
    min_similarity: float | None = None
    mode: str = "hybrid"


VARIANTS = (
    Variant("dbsf, code tokenizer (default)"),
    Variant("rrf k=60, code tokenizer", fusion="rrf", rrf_k=60),
    Variant("rrf k=10, code tokenizer", fusion="rrf", rrf_k=10),
    Variant("dbsf, word tokenizer", tokenizer="word"),
    Variant("dbsf, code, min_similarity -1", min_similarity=-1.0),
    Variant("dbsf, code, min_similarity 0.4", min_similarity=0.4),
    Variant("semantic only (dense, as 0.1), default min_similarity", mode="semantic"),
)


def _reencode(service: MemoryService, tokenizer: Tokenizer) -> None:
    """Write every stored point back with its BM25 vector made by `tokenizer` from the text the service
    indexes (`indexed_text.sparse_text`; given with the point, so the engine does not make its own). A
    text without any indexable token gets no vector from `encode_document`; the engine then makes one
    with the default tokenizer (it finds none either)."""
    from clarity.engines.base import iter_all

    for page in iter_all(service._eng(), with_vectors=True):
        for p in page:
            p.sparse = encode_document(sparse_text(p.payload), tokenizer)
        service._eng().upsert(page)


def _retrieve(service: MemoryService, query: str, dense: list[float], v: Variant) -> list[Point]:
    """The memories `retrieve` answers for `query` (limit K, the variant's mode and min_similarity, no
    other argument) when its search runs with the variant's fusion and tokenizer: the search
    `MemoryService.op_retrieve` makes, built here because the variant is not a `retrieve` argument."""
    mem = service.settings.memory
    threshold = mem.min_similarity if v.min_similarity is None else v.min_similarity
    flt = service._filter(m.RetrieveRequest(query=query, limit=K))
    flt["created_at"] = None
    weighted = mem.recency_weight > 0 or mem.importance_weight > 0
    fetch = min(100, K * CANDIDATE_FACTOR) if weighted else min(100, K + 10)
    sq = SearchQuery(dense=dense, sparse=encode_query(query, v.tokenizer), limit=fetch, mode=v.mode, flt=flt,
                     min_similarity=threshold, fusion=v.fusion, rrf_k=v.rrf_k)
    with service._lock:
        hits = service._eng().query(sq)
    return rerank(hits, K, mem.recency_weight, mem.importance_weight, mem.recency_half_life_days)


def variant_report(service: MemoryService, questions: Sequence[Question], by_uuid: dict[str, str],
                   variants: Sequence[Variant] = VARIANTS) -> dict[str, Any]:
    """Retrieval under each of `variants` (fusion, RRF k, tokenizer, min_similarity, mode), each
    question embedded once; the stored BM25 vectors are rewritten when the tokenizer changes and put
    back to the default tokenizer's afterwards."""
    dense = {q.id: service.embedder.embed_one(q.query) for q in questions}
    stored: Tokenizer = DEFAULT_TOKENIZER
    out: dict[str, Any] = {}
    try:
        for v in variants:
            if v.tokenizer != stored:
                stored = v.tokenizer
                _reencode(service, stored)
            ranks: Rankings = {q.id: [by_uuid.get(p.id, p.id) for p in _retrieve(service, q.query, dense[q.id], v)]
                               for q in questions}
            out[v.name] = score(questions, ranks)
    finally:
        if stored != DEFAULT_TOKENIZER:
            _reencode(service, DEFAULT_TOKENIZER)
    return out
