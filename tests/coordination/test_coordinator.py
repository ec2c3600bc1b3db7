"""Coordinator.call (coordination/coordinator.py) in-process: deadlines, retries and the errors it shapes,
with a real Lease in `tmp_path`, real child processes holding the lease, a real socket server where an
owner must accept a call, and the real memory service where a call runs here (operations that load no
model: stats, list, get)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity import __version__
from clarity.coordination import tickets, wire
from clarity.coordination.coordinator import Coordinator
from clarity.coordination.owner_server import OwnerServer
from clarity.errors import ClarityError, CoordinationTimeout, NotFound, OwnerUnresponsive, VersionMismatch
from clarity.platform import files, locks
from tests.coordination.support import HOLD_LEASE, Holder, settings_for


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Coordinator] = []
    holders: list[Holder] = []

    def new(hold_lease: bool = False, **coordination: Any) -> Coordinator:
        c = Coordinator(settings_for(tmp_path / str(len(made)), **coordination))
        made.append(c)
        if hold_lease:
            holders.append(Holder(c.settings.coordination_dir, HOLD_LEASE))
        return c

    yield new
    for h in holders:
        h.kill()
    for c in made:
        c.close()


def _tries(e: BaseException) -> int:
    m = re.search(r"tried (\d+) time\(s\)", str(e))
    assert m, str(e)
    return int(m.group(1))


def test_a_call_runs_here_when_nobody_owns_and_its_own_errors_pass_through(make: Any) -> None:
    c = make()
    assert c.role == "peer"
    assert c.call("stats", {})["total"] == 0
    assert c.role == "owner" and c.lease.held
    with pytest.raises(NotFound):
        c.call("get", {"memory_id": str(uuid.uuid4())})
    me = c.status()["this_process"]
    assert me["role"] == "owner" and me["engine_open"] and c.status()["owner"]["pid"] == me["pid"]


def test_a_call_nobody_can_serve_ends_by_its_deadline_saying_what_it_tried(make: Any,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="clarity.coordination")
    c = make(hold_lease=True, call_deadline_s=1.0, ticket_after_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(CoordinationTimeout) as e:
        c.call("store", {"id": str(uuid.uuid4()), "content": "nobody serves this"})
    took = time.monotonic() - t0
    assert 0.9 < took < 3, took
    msg = str(e.value)
    assert msg.startswith("store: no owner could serve the call within 1 s;")
    assert "take lease: lease held by another process" in msg and "Retrying is safe" in msg and _tries(e.value) > 1
    # it queued for a handoff meanwhile, and the call's end without the lease dropped the ticket
    assert "owner's socket unreachable while its lease is held; waiting for a handoff" in caplog.text
    assert c.own.waiter.ticket is None and tickets.live(c.lease.waiters_dir) == [] and c.role == "peer"


def test_the_backoff_between_attempts_is_capped_by_the_setting(make: Any) -> None:
    counts = {}
    for cap in (0.01, 0.5):
        c = make(hold_lease=True, call_deadline_s=1.0, retry_max_wait_s=cap, ticket_after_s=60)
        with pytest.raises(CoordinationTimeout) as e:
            c.call("list", {})
        counts[cap] = _tries(e.value)
    # about 170 attempts against about 10 (each attempt notes two tries: forward, take lease)
    assert counts[0.01] > 60 and counts[0.01] > 3 * counts[0.5], counts


def _busy_owner(c: Coordinator, hold_s: float) -> OwnerServer:
    """A server at the coordinator's socket that accepts every call and answers after `hold_s`."""
    assert c.socket_path is not None

    def slow(op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        time.sleep(hold_s)
        return {}

    srv = OwnerServer(c.socket_path, slow, 1 << 20, drain_s=hold_s + 1)
    srv.start()
    return srv


def test_a_call_sent_but_not_answered_is_an_unknown_outcome_from_a_busy_owner(make: Any) -> None:
    c = make(hold_lease=True, call_deadline_s=0.5)
    srv = _busy_owner(c, 1.0)
    try:
        with pytest.raises(CoordinationTimeout) as e:
            c.call("delete", {"memory_id": str(uuid.uuid4())})
    finally:
        srv.stop()
    msg = str(e.value)
    assert "alive but busy" in msg and "The outcome is unknown" in msg and "did not answer within 0.5 s" in msg
    assert not c.lease.held


def test_a_call_sent_to_an_owner_with_a_stale_heartbeat_says_unresponsive(make: Any) -> None:
    c = make(hold_lease=True, call_deadline_s=0.5, hung_after_s=0.1)
    srv = _busy_owner(c, 1.0)
    try:
        time.sleep(0.2)  # the holder never beats: its heartbeat is older than hung_after_s
        with pytest.raises(OwnerUnresponsive) as e:
            c.call("list", {})
    finally:
        srv.stop()
    assert "unresponsive" in str(e.value) and "outcome is unknown" not in str(e.value)  # list writes nothing


def test_naive_mode_never_takes_the_lease(make: Any) -> None:
    c = make(mode="naive")
    assert c.call("stats", {})["total"] == 0
    assert not c.lease.held and c.role == "idle" and c.socket_path is not None and not c.socket_path.exists()
    assert locks.probe(c.lease.lock_path) in (None, locks.LockState.FREE)


def test_close_releases_the_lease_ends_the_threads_and_refuses_later_calls(make: Any) -> None:
    c = make()
    c.call("list", {})
    assert c.lease.held and [t for t in threading.enumerate() if t.name == "clarity-heartbeat"]
    c.close()
    assert not c.lease.held and locks.probe(c.lease.lock_path) is locks.LockState.FREE
    assert not [t for t in threading.enumerate() if t.name.startswith(("clarity-heartbeat", "clarity-owner"))]
    with pytest.raises(ClarityError, match="shutting down"):
        c.call("list", {})


def test_an_owner_of_clarity_0_1_fails_a_call_at_once_with_one_message_until_it_is_gone(make: Any) -> None:
    """The lease is held by a process whose record is what Clarity 0.1.0 writes (no protocol), and its
    socket listens: a call fails at once with VersionMismatch (never retried to its deadline, no waiter
    ticket, nothing sent); once that owner is gone the same coordinator serves."""
    c = make(call_deadline_s=5.0, ticket_after_s=0.0)
    holder = Holder(c.settings.coordination_dir, HOLD_LEASE)
    rec = files.read_json(c.lease.record_path)
    assert rec is not None
    pid = rec["pid"]
    del rec["protocol"]
    files.publish_json(c.lease.record_path, {**rec, "version": "0.1.0"})
    got: list[Any] = []
    assert c.socket_path is not None
    srv = OwnerServer(c.socket_path, lambda op, args, deadline: got.append(op) or {}, 1 << 20)
    srv.start()
    try:
        for _ in range(2):
            t0 = time.monotonic()
            with pytest.raises(VersionMismatch) as e:
                c.call("store", {"id": str(uuid.uuid4()), "content": "not for an older owner"})
            assert time.monotonic() - t0 < 1.0
            assert e.value.message == (f"the store is owned by Clarity 0.1.0 (pid {pid}, protocol 1); this session "
                                       f"is Clarity {__version__} (protocol {wire.PROTOCOL}): restart the older "
                                       f"sessions")
        assert got == [] and tickets.live(c.lease.waiters_dir) == [] and not c.lease.held
    finally:
        srv.stop()
        holder.kill()
    assert c.call("stats", {})["total"] == 0 and c.lease.held  # the older owner left: this one serves
