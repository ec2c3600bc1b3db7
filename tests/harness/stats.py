"""Summaries for every figure the harness reports, over the project's one percentile definition
(`clarity.timings.percentile`: linear interpolation between the two nearest ranks). With fewer than about
100 values a p99 is close to the maximum; the summary reports `n` so a reader can judge.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clarity.timings import percentile

__all__ = ["percentile", "ratio", "summarize"]


def summarize(values: Iterable[float], digits: int = 3) -> dict[str, Any]:
    """{"n", "p50", "p99", "mean", "max"} of `values` (None for each figure when there are none)."""
    xs = list(values)
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)

    return {"n": len(xs), "p50": r(percentile(xs, 50)), "p99": r(percentile(xs, 99)),
            "mean": r(sum(xs) / len(xs)), "max": r(max(xs))}


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either is missing or base is zero."""
    if value is None or not base:
        return None
    return round(value / base, 3)
