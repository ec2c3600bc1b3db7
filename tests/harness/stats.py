"""One percentile definition for every figure the harness reports.

`percentile(values, q)` is linear interpolation between the two nearest ranks (numpy's default
"linear" method, Hyndman-Fan type 7): p0 is the minimum, p100 the maximum, p50 of an even count is the
mean of the two middle values. With fewer than about 100 values a p99 is close to the maximum; the
summary reports `n` so a reader can judge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0 <= q <= 100) of `values`, or None when there are none."""
    if not 0 <= q <= 100 or math.isnan(q):
        raise ValueError(f"percentile must be within [0, 100], not {q}")
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


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
