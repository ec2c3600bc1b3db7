"""One search: dense (meaning), sparse BM25 (keywords), or both fused in one engine query.

`SearchQuery` says what to find; each engine turns it into its own query (Edge: `Prefetch` +
`Fusion`, and a `Formula` over them when a floor can cut; qdrant-client: `prefetch` + `FusionQuery`, and
a `FormulaQuery`), so both engines rank alike.

What `min_similarity` means (every mode): it is a floor on the cosine similarity between the query
and the memory's dense vector. `semantic`: only memories with cosine >= min_similarity. `hybrid`: a
memory is returned when its cosine is >= min_similarity or it shares an indexed term with the query (a
keyword match is never cut by the cosine floor). The floor only cuts, it never reorders: both branches
are fused as if there were no floor (the dense branch: the nearest memories whatever their cosine), then
what passes neither test is dropped, in the same engine query (see `_CUT`). Fusing a floored dense
branch instead let the floor reorder what it kept: DBSF normalizes a branch by its own spread, so with
few memories above the floor the best of them scored like an average one (a lone one 0.5) and fell
below weak keyword matches (at the default 0.25 on tests/eval, int8 model: identifier hit@1 0.949 and
paraphrase recall@5 0.850, against 0.956 and 0.864 with the floor applied after the fusion). `keyword`:
keyword matches only, the floor does not apply. The `similarity` reported with each memory is always
that cosine (computed from the stored vector), never a fused score, so a person can compare it with
min_similarity. Results are ordered by score, ties by id, so the same query on the same store always
answers the same.

Fusion (measured on tests/eval, docs/bench/retrieval.md): distribution-based score fusion (DBSF: each
branch's scores normalized by their spread, then summed); it beat RRF (k 60 and 10) on identifiers
(hit@1 0.956 vs 0.844/0.867) at the same paraphrase recall@5 (0.918 vs 0.924/0.937). Each branch
fetches at least `PREFETCH_MIN` and 4x the limit candidates. Filters (type, tags, time range,
superseded) are applied inside every branch (pre-filter), never to the fused list. The fusion is the
query's (`SearchQuery.fusion`, `rrf_k`): DBSF unless a caller (the evaluation) asks for RRF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clarity.engines.base import Point, SearchQuery


def ranked(hits: Sequence[tuple[Point, Sequence[float] | None]], dense: Sequence[float]) -> list[Point]:
    """Each hit with its cosine to the query (from its stored dense vector) in `extra["cosine"]`, best
    score first, ties by id: the same query on the same store always answers in the same order.
    The cosines are computed together (numpy, float64); a hit without a vector gets None."""
    import numpy as np

    with_vec = [i for i, (_p, v) in enumerate(hits) if v]
    cos: dict[int, float] = {}
    if with_vec:
        m = np.asarray([hits[i][1] for i in with_vec], dtype=np.float64)
        q = np.asarray(dense, dtype=np.float64)
        norms = np.linalg.norm(m, axis=1) * float(np.linalg.norm(q))
        dots = m @ q
        cos = {i: (float(d / n) if n else 0.0) for i, d, n in zip(with_vec, dots, norms, strict=True)}
    out = []
    for i, (p, _vector) in enumerate(hits):
        p.extra["cosine"] = cos.get(i)
        out.append(p)
    out.sort(key=lambda p: (-(p.score or 0.0), p.id))
    return out


# A hybrid search with a floor: the outer query scores each candidate by the formula
# fused + _CUT * (kept - 1), where `fused` is its score in the unfloored fusion (prefetch 0) and `kept` is
# 1 when it is in prefetch 1 (the memories above the floor and the keyword matches, joined by RRF: every
# score there is > 0, so score / score is 1) and 0 otherwise; the threshold -_CUT / 2 drops the latter.
# A kept memory's score is exactly its fused one (DBSF sums two normalized scores, far inside +-_CUT / 2).
_CUT = 100.0


def _floored(sq: SearchQuery) -> bool:
    """True when the floor can cut something (a hybrid search with min_similarity above -1)."""
    return sq.min_similarity is not None and sq.min_similarity > -1.0


def _fusion(sq: SearchQuery) -> str:
    if sq.fusion not in ("dbsf", "rrf"):
        raise ValueError(f"unknown fusion {sq.fusion!r}: expected 'dbsf' or 'rrf'")
    return sq.fusion


def dense_params() -> Any:
    """Search parameters of every dense search on Edge: where a segment holds int8 copies of its vectors
    (a migrated store's quick index, `clarity.engines.edge.build_child.quick_index`), twice the wanted
    candidates are taken from them and rescored with the float vectors, so scores are exact cosines and
    the top results those of an exact search (30k random vectors: 1.000 of the exact top 10 against
    0.937 without, same latency). No effect on segments without such copies."""
    import qdrant_edge as q

    return q.SearchParams(quantization=q.QuantizationSearchParams(rescore=True, oversampling=2.0))


def edge_request(sq: SearchQuery, flt: Any, dense_name: str, sparse_name: str) -> Any:
    """The Qdrant Edge `QueryRequest` for `sq` (`flt`: the engine's filter object or None)."""
    import qdrant_edge as q

    dense_q = q.Query.Nearest(list(sq.dense), using=dense_name)
    sparse_q = (q.Query.Nearest(q.SparseVector(*sq.sparse), using=sparse_name)
                if sq.sparse is not None else None)
    with_vec = [dense_name]
    if sq.mode == "semantic" or (sq.mode == "hybrid" and sparse_q is None):
        return q.QueryRequest(limit=sq.limit, query=dense_q, filter=flt, score_threshold=sq.min_similarity,
                              with_payload=True, with_vector=with_vec, params=dense_params())
    if sq.mode == "keyword":
        if sparse_q is None:
            return None
        return q.QueryRequest(limit=sq.limit, query=sparse_q, filter=flt, with_payload=True,
                              with_vector=with_vec)
    n = sq.prefetch_limit()
    fusion: Any = q.Fusion.Dbsf() if _fusion(sq) == "dbsf" else q.Fusion.Rrf(k=sq.rrf_k)
    fused = [q.Prefetch(limit=n, query=dense_q, filter=flt, params=dense_params()),
             q.Prefetch(limit=n, query=sparse_q, filter=flt)]
    if not _floored(sq):
        return q.QueryRequest(limit=sq.limit, query=fusion, with_payload=True, with_vector=with_vec,
                              prefetches=fused)
    passing = [q.Prefetch(limit=n, query=dense_q, filter=flt, score_threshold=sq.min_similarity,
                          params=dense_params()),
               q.Prefetch(limit=n, query=sparse_q, filter=flt)]
    union: Any = q.Fusion.Rrf(k=60)  # any fusion: only which memories it holds counts
    x = q.Expression
    kept = x.Div(x.Variable("$score[1]"), x.Variable("$score[1]"), by_zero_default=0.0)
    formula = x.Sum([x.Variable("$score[0]"), x.Mult([x.Constant(_CUT), x.Sum([kept, x.Constant(-1.0)])])])
    return q.QueryRequest(
        limit=sq.limit, with_payload=True, with_vector=with_vec, score_threshold=-_CUT / 2,
        query=q.Formula(formula, defaults={"$score[0]": 0.0, "$score[1]": 0.0}),
        prefetches=[q.Prefetch(limit=2 * n, query=fusion, prefetches=fused),
                    q.Prefetch(limit=2 * n, query=union, prefetches=passing)],
    )


def client_query(sq: SearchQuery, flt: Any, sparse_name: str) -> dict[str, Any] | None:
    """Keyword arguments for qdrant-client's `query_points` (unnamed dense vector), or None for no hits."""
    from qdrant_client import models as m

    sparse = m.SparseVector(indices=sq.sparse[0], values=sq.sparse[1]) if sq.sparse is not None else None
    base: dict[str, Any] = {"limit": sq.limit, "with_payload": True, "with_vectors": True}
    if sq.mode == "semantic" or (sq.mode == "hybrid" and sparse is None):
        return {**base, "query": list(sq.dense), "query_filter": flt, "score_threshold": sq.min_similarity}
    if sq.mode == "keyword":
        if sparse is None:
            return None
        return {**base, "query": sparse, "using": sparse_name, "query_filter": flt}
    n = sq.prefetch_limit()
    fusion = (m.FusionQuery(fusion=m.Fusion.DBSF) if _fusion(sq) == "dbsf"
              else m.RrfQuery(rrf=m.Rrf(k=sq.rrf_k)))
    fused = [m.Prefetch(query=list(sq.dense), filter=flt, limit=n),
             m.Prefetch(query=sparse, using=sparse_name, filter=flt, limit=n)]
    if not _floored(sq):
        return {**base, "query": fusion, "prefetch": fused}
    passing = [m.Prefetch(query=list(sq.dense), filter=flt, limit=n, score_threshold=sq.min_similarity),
               m.Prefetch(query=sparse, using=sparse_name, filter=flt, limit=n)]
    kept = m.DivExpression(div=m.DivParams(left="$score[1]", right="$score[1]", by_zero_default=0.0))
    formula = m.SumExpression(sum=["$score[0]", m.MultExpression(mult=[_CUT, m.SumExpression(sum=[kept, -1.0])])])
    return {**base, "score_threshold": -_CUT / 2,
            "query": m.FormulaQuery(formula=formula, defaults={"$score[0]": 0.0, "$score[1]": 0.0}),
            "prefetch": [m.Prefetch(query=fusion, prefetch=fused, limit=2 * n),
                         m.Prefetch(query=m.RrfQuery(rrf=m.Rrf(k=60)), prefetch=passing, limit=2 * n)]}
