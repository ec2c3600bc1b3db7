"""The page's overview (clarity/ui/overview.py): totals by tag and origin, and memories over time, from
memories as `list` returns them; and its cache, over a call function that counts what it is asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clarity.ui import overview
from clarity.ui.overview import Overview, summarize, timeline

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_timeline_picks_the_finest_unit_that_fits_and_keeps_empty_buckets() -> None:
    hours = timeline([T0, T0 + timedelta(minutes=10), T0 + timedelta(hours=3)])
    assert hours["unit"] == "hour" and [b["count"] for b in hours["buckets"]] == [2, 0, 0, 1]
    assert hours["buckets"][0]["start"] == "2026-03-01T09:00:00+00:00"
    days = timeline([T0, T0 + timedelta(days=5)])
    assert days["unit"] == "day" and len(days["buckets"]) == 6 and sum(b["count"] for b in days["buckets"]) == 2
    weeks = timeline([T0, T0 + timedelta(days=200)])
    assert weeks["unit"] == "week" and len(weeks["buckets"]) <= overview.MAX_BUCKETS
    years = timeline([T0, T0 + timedelta(days=3000)])
    assert years["unit"] == "30 days" and sum(b["count"] for b in years["buckets"]) == 2
    assert timeline([]) == {"unit": "day", "buckets": []}


def test_summarize_counts_tags_origins_and_skips_bad_times() -> None:
    mems = [{"tags": ["db", "auth"], "origin": "tool", "created_at": T0.isoformat()},
            {"tags": ["db"], "origin": "ui", "created_at": "not a time"},
            {"tags": [], "created_at": (T0 + timedelta(hours=1)).isoformat()}]
    s = summarize(mems)
    assert s["by_tag"] == {"db": 2, "auth": 1} and s["tag_count"] == 2
    assert s["by_origin"] == {"tool": 1, "ui": 1, "unknown": 1}
    assert sum(b["count"] for b in s["timeline"]["buckets"]) == 2


def test_the_overview_pages_through_the_store_and_caches_until_the_total_changes() -> None:
    store = [{"id": str(i), "tags": [f"t{i % 3}"], "origin": "tool", "created_at": T0.isoformat()}
             for i in range(2500)]
    calls: list[dict[str, Any]] = []

    def call(op: str, args: dict[str, Any]) -> dict[str, Any]:
        assert op == "list" and args["include_superseded"] is True
        calls.append(args)
        page = store[args["offset"]:args["offset"] + args["limit"]]
        return {"total": len(store), "offset": args["offset"], "limit": args["limit"], "memories": page}

    ov = Overview(call)
    first = ov.get(2500)
    assert first["scanned"] == 2500 and not first["partial"] and len(calls) == 3
    assert first["by_tag"] == {"t0": 834, "t1": 833, "t2": 833}
    assert ov.get(2500) is first and len(calls) == 3  # cached
    store.append({"id": "x", "tags": ["new"], "created_at": T0.isoformat()})
    again = ov.get(2501)
    assert again["scanned"] == 2501 and again["by_tag"]["new"] == 1 and len(calls) == 6
