"""scripts/soak.py runs end to end as a program (3 owner kills, small sizes), with real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_soak_three_owner_kills_loses_nothing(tmp_path: Path) -> None:
    out, md = tmp_path / "soak.json", tmp_path / "soak.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITY_")}
    proc = subprocess.run([sys.executable, "scripts/soak.py", "--sessions", "3", "--owner-kills", "3",
                           "--pace-s", "0.3", "--json", str(out), "--markdown", str(md), "--timeout-s", "90",
                           "--seed", "16"],
                          cwd=REPO, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    res = json.loads(out.read_text())
    assert res["owner_kills"] >= 3 and res["failover_ms"]["n"] >= 1 and res["failover_ms"]["p50"] > 0
    assert res["acked"] > 0 and res["stored"] >= res["acked"]
    assert res["lost"] == 0 and res["duplicated"] == 0
    assert res["crashed_workers"] == [] and not res["timed_out"] and res["verify_error"] is None
    assert res["machine"]["nproc"] >= 1 and res["s_per_owner_kill"] > 0
    assert "every acknowledged write is stored exactly once" in proc.stdout
    assert "| lost | 0 |" in md.read_text()
