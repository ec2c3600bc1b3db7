"""A wall-clock step changes no wait (issue 16, finding 7): every deadline of the coordination layer is a
`time.monotonic()` instant, and the socket carries the time left, not an instant.

`time.time` is replaced, inside this process, by a clock that reads true the first time and is then
stepped by hours (forward: a wait computed from it would end at once; backward: it would last hours).
Each wait below still ends at its deadline. (The owner server's side, a budget turned into a deadline on
arrival under a stepped clock, is in test_owner_server.py; the frame's content in test_peer_client.py.)"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarity.coordination.batcher import Batcher
from clarity.coordination.coordinator import Coordinator
from clarity.coordination.owner_server import OwnerServer
from clarity.coordination.ownership import Ownership
from clarity.coordination.peer_client import PeerClient
from clarity.errors import ClarityError, CoordinationTimeout, OwnerTimeout
from tests.coordination.support import HOLD_LEASE, FakeBuild, FakeEmbedder, FakeService, Holder, settings_for

pytestmark = pytest.mark.timeout(120)
HOURS = 3 * 3600.0
STEPS = [pytest.param(-HOURS, id="back-3h"), pytest.param(HOURS, id="forward-3h")]


class SteppedClock:
    """`time.time` that reads true `true_reads` times, then `step_s` off."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step_s: float, true_reads: int = 1) -> None:
        self._real = time.time
        self._left = true_reads
        self._step_s = step_s
        self._lock = threading.Lock()
        self.reads = 0
        monkeypatch.setattr(time, "time", self)

    def __call__(self) -> float:
        with self._lock:
            self.reads += 1
            if self._left > 0:
                self._left -= 1
                return self._real()
        return self._real() + self._step_s


def _in_thread(fn: Any, limit_s: float = 20.0) -> tuple[Any, float]:
    """Run `fn` in a thread (a wait that lasts hours must fail the test, not hang it): (its outcome,
    seconds taken)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - the outcome is what the test checks
            out.append(e)

    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"the wait did not end within {limit_s} s"
    return out[0], time.monotonic() - t0


@pytest.mark.parametrize("step_s", STEPS)
def test_a_forwarded_call_to_a_busy_owner_ends_at_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               step_s: float) -> None:
    """The owner (a server at the coordinator's socket, the lease held by a child) answers only after 2.5 s;
    the call's deadline is 0.8 s. A step back would have let the socket wait hours (the reply would come
    at 2.5 s); a step forward would have ended it at once."""
    c = Coordinator(settings_for(tmp_path, call_deadline_s=0.8, ticket_after_s=60))
    holder = Holder(c.settings.coordination_dir, HOLD_LEASE)
    assert c.socket_path is not None

    def slow(op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        time.sleep(2.5)
        return {"late": True}

    srv = OwnerServer(c.socket_path, slow, 1 << 20, drain_s=3.5)
    srv.start()
    try:
        SteppedClock(monkeypatch, step_s)
        outcome, took = _in_thread(lambda: c.call("delete", {"memory_id": str(uuid.uuid4())}))
    finally:
        srv.stop()
        holder.kill()
        c.close()
    assert isinstance(outcome, ClarityError) and "did not answer within 0.8 s" in outcome.message, outcome
    assert 0.7 < took < 2.0, took


@pytest.mark.parametrize("step_s", STEPS)
def test_the_forwarding_client_waits_for_a_reply_until_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    step_s: float) -> None:
    release = threading.Event()

    def slow(op: str, args: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        release.wait(30)
        return {}

    srv = OwnerServer(tmp_path / "o.sock", slow, 1 << 20, drain_s=1)
    srv.start()
    client = PeerClient(srv.path, 1 << 20)
    try:
        SteppedClock(monkeypatch, step_s, true_reads=0)
        outcome, took = _in_thread(lambda: client.request("list", {}, time.monotonic() + 0.5))
    finally:
        release.set()
        client.close()
        srv.stop()
    assert isinstance(outcome, OwnerTimeout), outcome
    assert 0.4 < took < 1.5, took


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[Ownership]:
    settings = settings_for(tmp_path, call_deadline_s=5, heartbeat_s=60)
    o = Ownership(settings, None, warm_model=False, build=FakeBuild(FakeService()), new_embedder=FakeEmbedder)
    assert o.try_become_owner(time.monotonic() + 5)
    yield o
    o.close()


def _busy(lock: Any) -> tuple[threading.Event, threading.Event]:
    """Another operation holds `lock` until the returned `done` is set (`held` once it does)."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait(30)

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(10)
    return held, done


@pytest.mark.parametrize("step_s", STEPS)
@pytest.mark.parametrize("op", ["list", "store"])
def test_an_operation_waiting_for_the_owners_lock_gives_up_at_its_deadline(owner: Ownership,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           step_s: float, op: str) -> None:
    """Ownership.run (and, for a store, the batcher in front of it) while another operation holds the
    operation lock: CoordinationTimeout at the deadline, nothing applied."""
    _, done = _busy(owner.op_lock)
    try:
        SteppedClock(monkeypatch, step_s, true_reads=0)
        args = {"id": "x", "content": "c"} if op == "store" else {}
        outcome, took = _in_thread(lambda: owner.run(op, args, time.monotonic() + 0.5, forwarded=False))
    finally:
        done.set()
    assert isinstance(outcome, CoordinationTimeout) and "nothing was applied" in outcome.message, outcome
    assert 0.4 < took < 1.5, took


@pytest.mark.parametrize("step_s", STEPS)
def test_a_forwarded_call_without_a_deadline_gets_the_owners_own_monotonic_one(owner: Ownership,
                                                                               monkeypatch: pytest.MonkeyPatch,
                                                                               step_s: float) -> None:
    owner.cfg.call_deadline_s = 0.5
    _, done = _busy(owner.op_lock)
    try:
        SteppedClock(monkeypatch, step_s, true_reads=0)
        outcome, took = _in_thread(lambda: owner.serve_forwarded("list", {}, None))
    finally:
        done.set()
    assert isinstance(outcome, CoordinationTimeout), outcome
    assert 0.4 < took < 1.5, took


@pytest.mark.parametrize("step_s", STEPS)
def test_a_store_queued_behind_other_batches_gives_up_at_its_deadline(monkeypatch: pytest.MonkeyPatch,
                                                                      step_s: float) -> None:
    lock = threading.Lock()
    b = Batcher(lock, 5.0)
    gate = threading.Event()

    def run_batch(batch: list[Any]) -> list[Any]:
        gate.wait(30)
        return [{"id": a["id"]} for a in batch]

    first = threading.Thread(target=lambda: b.submit({"id": 1}, time.monotonic() + 30, lambda: None, run_batch),
                             daemon=True)
    first.start()  # leads, and runs its batch until `gate`
    end = time.monotonic() + 10
    while not b._leading:
        assert time.monotonic() < end
        time.sleep(0.005)
    try:
        SteppedClock(monkeypatch, step_s, true_reads=0)
        outcome, took = _in_thread(lambda: b.submit({"id": 2}, time.monotonic() + 0.5, lambda: None, run_batch))
    finally:
        gate.set()
        first.join(10)
    assert isinstance(outcome, CoordinationTimeout) and "nothing was applied" in outcome.message, outcome
    assert 0.4 < took < 1.5, took
