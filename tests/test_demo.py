"""`clarity demo`, run as a user runs it: two real `clarity serve` sessions, the owner SIGKILLed, nothing
lost, in under 15 s, ending with the commands that set Clarity up for a project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from clarity.demo import MEMORIES, SETUP
from tests.harness.processes import alive


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clarity", "demo", *args], capture_output=True, text=True,
                          timeout=240)


def test_demo_json_the_owner_dies_and_nothing_is_lost(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    proc = _demo("--home", str(home), "--json")
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    report = orjson.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert report["passed"] is True and "error" not in report
    a, b = report["sessions"]["A"], report["sessions"]["B"]
    assert a != b and report["killed_owner_pid"] in (a, b)
    assert report["served_by_pid"] in (a, b) and report["served_by_pid"] != report["killed_owner_pid"]
    assert not alive(report["killed_owner_pid"])
    assert len(report["stored"]) == len(MEMORIES) and all(m["stored"] for m in report["stored"])
    ids = [m["id"] for m in report["stored"]]
    for phase in ("found_before_kill", "found_after_kill"):
        assert [f["id"] for f in report[phase]] == ids and all(f["found"] for f in report[phase]), report[phase]
    assert report["lost"] == [] and report["total_after_kill"] == len(MEMORIES)
    assert report["elapsed_s"] < 15, report["elapsed_s"]
    assert report["setup"] == SETUP
    assert (home / "logs" / "demo-servers.stderr").is_file()  # --home keeps the store and its logs


def test_demo_tells_the_story_and_ends_with_the_setup_commands() -> None:
    proc = _demo()
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    out = proc.stdout
    assert "killing it with SIGKILL" in out and "nothing lost" in out and "demo passed in" in out
    assert out.count("NOT FOUND") == 0
    assert out.rstrip().splitlines()[-2:] == [f"  {cmd}" for cmd in SETUP]
    assert "Traceback" not in proc.stderr
