"""tests.harness.bench_report: the retrieves timed while the index builds (issue 20), in the per-engine table
and the summary row, from a results dict shaped as scripts/bench.py writes it (no servers)."""

from __future__ import annotations

from typing import Any

from tests.harness import bench_report as report


def row(engine: str, size: int, wait: float | None) -> dict[str, Any]:
    return {"engine": engine, "size": size, "first_call_ms": 1000.0, "index_wait_s": wait, "retrieve_p50": 12.0,
            "store_p50": 13.0, "list_p50": 5.0, "stats_p50": 4.0, "owner_rss_mib": 300.0,
            "failover_p50": None, "failover_max": None}


def results(during: dict[str, Any] | None, wait: float | None = 280.0) -> dict[str, Any]:
    return {"rows": [row("edge", 1000, None), row("migrated", 1000, None), row("migrated", 100_000, wait)],
            "owner": [{"engine": "edge", "size": 1000, "retrieve_during_build": None},
                      {"engine": "migrated", "size": 1000, "retrieve_during_build": None},
                      {"engine": "migrated", "size": 100_000, "retrieve_during_build": during}]}


def test_the_table_shows_the_build_window_p50_or_a_dash() -> None:
    col = report.ISSUE8_COLS.index("retrieve p50 during index build")
    res = results({"n": 1200, "p50": 21.5, "p90": 35.0, "p99": 60.0, "mean": 23.0, "max": 90.0})
    rows = report.issue8_rows(res)
    assert all(len(r) == len(report.ISSUE8_COLS) for r in rows)
    assert [r[col] for r in rows] == ["-", "-", "21.5 ms"]
    assert rows[2][report.ISSUE8_COLS.index("then index build")] == "280 s"


def test_the_summary_row_states_the_figure_against_the_target() -> None:
    lines = report.build_window_lines(results({"n": 1200, "p50": 21.5, "p90": 35.0, "p99": 60.0, "mean": 23.0,
                                               "max": 90.0}))
    text = "\n".join(lines)
    assert "100,000 memories" in text and "21.5 ms, p90 35.0 ms, n=1200; build 280.0 s" in text
    assert "<= 30 ms | met |" in text
    slow = "\n".join(report.build_window_lines(results({"n": 50, "p50": 81.8, "p90": 120.0, "p99": 150.0,
                                                        "mean": 85.0, "max": 160.0})))
    assert "81.8 ms" in slow and "| not met |" in slow


def test_no_build_or_no_migrated_row_is_said_plainly() -> None:
    assert "no index build ran" in "\n".join(report.build_window_lines(results(None, wait=None)))
    assert "not measured by this run" in "\n".join(report.build_window_lines(results(None)))
    assert report.build_window_lines({"rows": [row("edge", 1000, None)], "owner": []}) == []
    older = {"rows": [row("migrated", 1000, 90.0)]}  # a results.json from before the owner rows carried it
    assert report.issue8_rows(older)[0][report.ISSUE8_COLS.index("retrieve p50 during index build")] == "-"
