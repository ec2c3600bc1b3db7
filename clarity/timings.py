"""Per-stage timings of recent calls in this process, for `coordination_status()["timings"]`.

Stages (each recorded where it happens, so a session reports the stages it ran):
- `mcp_parse`: the MCP edge validates a tool's arguments into a typed request (every session);
- `mcp_reply`: the MCP edge validates an answer into the tool's output model (fitted first where sized);
- `forward`: a peer's round trip through the owner's socket, send to reply (non-owners);
- `wire`: one frame's JSON encoded or decoded, either side of the owner's socket;
- `queue_wait`: an operation waits at the owner for the operation lock; a store, from its arrival to
  the start of the batch it runs in (owner);
- `embed`: one embedding call (owner, standby warm-up);
- `engine`: one engine write of a store batch (owner);
- `execute`: one operation (or one store batch) in the memory service (owner).

Guarantees: thread-safe, bounded memory (the last `WINDOW` samples per stage), never raises. The
figures are milliseconds; `p50`/`p90` are `percentile` of the window. Not a benchmark: the windows mix
calls of every kind.

`percentile` is the one percentile definition of the project (the benchmarks and the stress report use
it too, through tests/harness/stats.py): linear interpolation between the two nearest ranks (numpy's
default "linear" method, Hyndman-Fan type 7): p0 is the minimum, p100 the maximum, p50 of an even count
is the mean of the two middle values.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

WINDOW = 512

_lock = threading.Lock()
_samples: dict[str, deque[float]] = {}
_counters: dict[str, int] = {}


def record(stage: str, seconds: float) -> None:
    with _lock:
        q = _samples.get(stage)
        if q is None:
            q = _samples[stage] = deque(maxlen=WINDOW)
        q.append(seconds)


def count(name: str, n: int = 1) -> None:
    with _lock:
        _counters[name] = _counters.get(name, 0) + n


@contextmanager
def timed(stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        record(stage, time.perf_counter() - t0)


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


def _ms(xs: list[float], q: float) -> float:
    p = percentile(xs, q)
    return round((p or 0.0) * 1000, 3)


def snapshot() -> dict[str, Any]:
    """{stage: {"n", "p50_ms", "p90_ms"}} over each stage's window, plus "counters"."""
    with _lock:
        data = {k: list(v) for k, v in _samples.items()}
        counters = dict(_counters)
    out: dict[str, Any] = {k: {"n": len(v), "p50_ms": _ms(v, 50), "p90_ms": _ms(v, 90)}
                           for k, v in data.items() if v}
    out["counters"] = counters
    return out


def reset() -> None:
    with _lock:
        _samples.clear()
        _counters.clear()
