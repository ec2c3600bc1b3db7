"""scripts/stress.py and scripts/bench.py run end to end as programs (small sizes), with real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_stress_small_with_owner_kills_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "stress.json"
    proc = run_script("scripts/stress.py", "--writers", "2", "--writes", "120", "--kill-owner-every", "1.0",
                      "--json", str(out), "--timeout-s", "400", timeout=600)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    res = json.loads(out.read_text())
    assert res["acked"] == 240 and res["stored"] == 240
    assert res["lost"] == 0 and res["duplicates"] == 0
    assert res["owner_kills"] >= 1 and res["failover_ms"]["n"] >= 1
    assert res["crashed_workers"] == [] and not res["timed_out"]
    assert "everything acknowledged is stored, once" in proc.stdout


def test_bench_smoke_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_script("scripts/bench.py", "--smoke", "--engines", "qdrant", "--no-peer", "--out", str(out),
                      "--cache", str(tmp_path / "cache"), timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    res = json.loads((out / "results.json").read_text())
    (row,) = res["rows"]
    assert row["engine"] == "qdrant" and row["size"] == 200 and row["errors"] == 0
    for key in ("first_call_ms", "store_p50", "retrieve_p50", "list_p50", "stats_p50", "owner_rss_mib",
                "non_owner_rss_mib", "failover_p50"):
        assert isinstance(row[key], int | float) and row[key] > 0, key
    assert res["stores"]["qdrant-200"]["engine_name"] == row["engine_name"]
    (tp,) = res["throughput"]
    assert tp["one"]["n"] == 1 and tp["many"]["n"] == 2 and tp["many"]["stores_per_s"] > 0
    assert tp["one"]["error_count"] == 0 and tp["many"]["error_count"] == 0
    assert res["peer"] == [] and res["leftover_processes_killed"] == []
    md = (out / "results.md").read_text()
    assert "| qdrant | 200 |" in md and "failover p50 / max" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Per engine and store size" in proc.stdout
    assert not list((tmp_path / "cache" / "runs").iterdir())  # the scratch folder is removed
