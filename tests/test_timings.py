"""clarity.timings: per-stage windows of recent samples, counters, thread-safe, bounded, never raising."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Iterator

import pytest

from clarity import timings


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    timings.reset()
    yield
    timings.reset()


def test_an_empty_snapshot_has_only_the_counters() -> None:
    assert timings.snapshot() == {"counters": {}}


def test_samples_are_reported_in_milliseconds_per_stage() -> None:
    timings.record("embed", 0.0123456)
    timings.record("engine", 0.002)
    timings.record("engine", 0.004)
    snap = timings.snapshot()
    assert snap["embed"] == {"n": 1, "p50_ms": 12.346, "p90_ms": 12.346}  # rounded to the microsecond
    assert snap["engine"]["n"] == 2
    assert set(snap) == {"embed", "engine", "counters"}


@pytest.mark.parametrize("n", [1, 2, 3, 10, 12, 101])
def test_p50_and_p90_are_the_percentiles_of_the_window(n: int) -> None:
    values = [(i + 1) / 1000 for i in range(n)]
    for v in reversed(values):  # the order of arrival does not matter
        timings.record("s", v)
    snap = timings.snapshot()["s"]
    assert snap["p50_ms"] == round(_type7(values, 50) * 1000, 3)
    assert snap["p90_ms"] == round(_type7(values, 90) * 1000, 3)


def _type7(values: list[float], q: float) -> float:
    """Hyndman-Fan type 7 through the standard library (statistics' "inclusive" method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def test_percentile_interpolates_between_the_nearest_ranks() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]
    assert timings.percentile(xs, 0) == 1.0 and timings.percentile(xs, 100) == 4.0
    assert timings.percentile(xs, 50) == 2.5  # the mean of the two middle values
    assert timings.percentile(range(1, 11), 90) == pytest.approx(9.1)
    assert timings.percentile([7.0], 37) == 7.0
    assert timings.percentile([], 50) is None
    for q in (1, 25, 33, 75, 99):
        assert timings.percentile(range(1, 21), q) == pytest.approx(_type7(list(range(1, 21)), q))


@pytest.mark.parametrize("q", [-1, 100.5, float("nan")])
def test_percentile_refuses_a_q_outside_0_to_100(q: float) -> None:
    with pytest.raises(ValueError):
        timings.percentile([1.0], q)


def test_the_window_keeps_only_the_last_samples() -> None:
    for _ in range(timings.WINDOW):
        timings.record("wire", 1.0)  # old and slow
    for _ in range(timings.WINDOW):
        timings.record("wire", 0.001)  # recent and fast
    snap = timings.snapshot()["wire"]
    assert snap["n"] == timings.WINDOW
    assert snap["p50_ms"] == snap["p90_ms"] == 1.0


def test_counters_add_up() -> None:
    timings.count("retries")
    timings.count("retries", 4)
    timings.count("handoffs", 0)
    assert timings.snapshot()["counters"] == {"retries": 5, "handoffs": 0}


def test_timed_records_even_when_the_block_raises() -> None:
    with timings.timed("execute"):
        pass
    with pytest.raises(ValueError), timings.timed("execute"):
        raise ValueError("the operation failed")
    assert timings.snapshot()["execute"]["n"] == 2


def test_concurrent_recording_loses_nothing() -> None:
    def work() -> None:
        for i in range(2000):
            timings.record(f"stage{i % 3}", 0.001)
            timings.count("calls")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = timings.snapshot()
    assert snap["counters"] == {"calls": 16000}
    assert [snap[f"stage{k}"]["n"] for k in range(3)] == [timings.WINDOW] * 3


def test_snapshot_is_a_copy_and_reset_clears_everything() -> None:
    timings.record("forward", 0.01)
    timings.count("x")
    snap = timings.snapshot()
    snap["counters"]["x"] = 99
    assert timings.snapshot()["counters"] == {"x": 1}
    timings.reset()
    assert timings.snapshot() == {"counters": {}}
