"""Optional recency and importance in ranking (off by default).

`rerank` reorders the candidates a search returned: each keeps a share of its search relevance (its
score divided by the best candidate's, so the scale of DBSF, cosine and BM25 scores does not matter) and
gains `recency_weight` x a decay of its age (0.5 ** (age_days / half_life_days), from `created_at`) and
`importance_weight` x its importance:

    final = (1 - recency_weight - importance_weight) * relevance + recency_weight * decay
            + importance_weight * importance

With both weights 0 (the default, `memory.recency_weight` / `memory.importance_weight`) the search order
is returned unchanged. The service asks the engine for more candidates than `limit` when a weight is set,
so a newer or more important memory just below the cut can move up; filters still apply inside the query.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clarity.engines.base import Point

CANDIDATE_FACTOR = 4


def _age_days(created_at: object, now: datetime) -> float:
    try:
        ts = datetime.fromisoformat(str(created_at))
    except ValueError:
        return float("inf")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return max(0.0, (now - ts).total_seconds() / 86400)


def rerank(points: list[Point], limit: int, recency_weight: float, importance_weight: float,
           half_life_days: float, now: datetime | None = None) -> list[Point]:
    if not points or (recency_weight <= 0 and importance_weight <= 0):
        return points[:limit]
    now = now or datetime.now(UTC)
    top = max((p.score or 0.0) for p in points) or 1.0
    keep = max(0.0, 1.0 - recency_weight - importance_weight)

    def final(p: Point) -> float:
        relevance = (p.score or 0.0) / top
        decay: float = 0.5 ** (_age_days(p.payload.get("created_at"), now) / half_life_days)
        importance = float(p.payload.get("importance", 0.5) or 0.0)
        return keep * relevance + recency_weight * decay + importance_weight * importance

    return sorted(points, key=final, reverse=True)[:limit]
