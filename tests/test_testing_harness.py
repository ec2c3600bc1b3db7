"""tests.harness: the one exactly-once verifier, the one percentile, process helpers, ledgers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness.ledger import Ack, Jsonl, Tail, acks_from_records, read_jsonl, verify
from tests.harness.processes import alive, marked_pids, owner_pid, proc_state, reap, rss_kib, session_id_of
from tests.harness.stats import percentile, ratio, summarize


def mem(i: str, content: str) -> dict[str, str]:
    return {"id": i, "content": content}


def test_verify_all_stored_once_is_ok() -> None:
    v = verify([Ack("a", "1"), Ack("b", "2")], [mem("1", "a"), mem("2", "b")])
    assert (v.acked, v.stored, v.lost, v.duplicates, v.stored_not_acked) == (2, 2, 0, 0, 0)
    assert v.ok


def test_verify_counts_a_missing_ack_as_lost() -> None:
    v = verify([Ack("a", "1"), Ack("b", "2"), Ack("c", "3")], [mem("1", "a")])
    assert v.lost == 2 and v.lost_ids == ["2", "3"] and v.duplicates == 0 and not v.ok


def test_verify_counts_extra_copies_once_each() -> None:
    # "a" stored three times: two extra copies; "b" twice: one; an unacknowledged "c" twice: one more
    stored = [mem("1", "a"), mem("4", "a"), mem("5", "a"), mem("2", "b"), mem("6", "b"), mem("7", "c"),
              mem("8", "c")]
    v = verify([Ack("a", "1"), Ack("b", "2")], stored)
    assert v.duplicates == 4 and v.lost == 0 and v.stored_not_acked == 1
    assert v.duplicated_contents == ["a", "b", "c"] and not v.ok


def test_verify_a_retry_acknowledged_twice_is_not_a_duplicate() -> None:
    # the first ack's reply was lost with its owner; the retry came back as duplicate_of the same id
    v = verify([Ack("a", "1"), Ack("a", "1")], [mem("1", "a")])
    assert v.acked == 1 and v.duplicates == 0 and v.lost == 0 and v.ok


def test_verify_an_id_holding_other_content_is_lost() -> None:
    v = verify([Ack("a", "1")], [mem("1", "changed")])
    assert v.lost == 1 and v.content_mismatch == 1 and v.stored_not_acked == 1


def test_verify_unacknowledged_writes_are_allowed() -> None:
    v = verify([Ack("a", "1")], [mem("1", "a"), mem("9", "landed, reply lost")])
    assert v.ok and v.stored_not_acked == 1


def test_ledger_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "w0.jsonl"
    log = Jsonl(path)
    log.write(ev="ack", content="a", id="1")
    tail = Tail(path)
    assert [r["id"] for r in tail.read()] == ["1"]
    log.write(ev="error", kind="connection_lost")
    log.close()
    with path.open("a") as f:
        f.write('{"ev": "ack", "content": "b"')  # a process killed mid-line
    assert [r["ev"] for r in tail.read()] == ["error"]
    assert acks_from_records(read_jsonl(path)) == [Ack("a", "1")]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_percentile_is_linear_interpolation() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 0) == 1 and percentile([1, 2, 3, 4], 100) == 4
    assert percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize_and_ratio() -> None:
    s = summarize([10, 20, 30, 40])
    assert s == {"n": 4, "p50": 25.0, "p99": 39.7, "mean": 25.0, "max": 40}
    assert summarize([]) == {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}
    assert ratio(1, 2) == 0.5 and ratio(None, 2) is None and ratio(1, 0) is None


def test_owner_pid_from_either_status_shape() -> None:
    assert owner_pid({"owner": {"pid": 42, "state": "serving"}, "this_process": {"pid": 7}}) == 42
    assert owner_pid({"owner": None}) is None and owner_pid(None) is None and owner_pid({}) is None


def test_reap_kills_only_the_runs_marked_processes() -> None:
    marker = f"h-{uuid.uuid4().hex[:8]}-"
    code = "import time; time.sleep(60)"
    ours = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "CLARITY_SESSION_ID": f"{marker}1"})
    other = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "CLARITY_SESSION_ID": "someone-1"})
    try:
        assert marked_pids(marker) == [ours.pid]
        assert session_id_of(ours.pid) == f"{marker}1" and proc_state(ours.pid) in ("R", "S")
        assert rss_kib(ours.pid) and alive(other.pid)
        assert reap(marker) == [ours.pid]
        assert ours.wait(timeout=10) == -9
        assert other.poll() is None and marked_pids(marker) == []
        with pytest.raises(ValueError):
            marked_pids("")
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()
