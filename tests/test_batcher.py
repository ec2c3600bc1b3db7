"""The owner's store queue (coordination/batcher.py) with real threads and a real lock: what is queued
runs as one batch, a lone caller runs at once, callers of a finished batch return at once (never behind
the next batch or another operation holding the lock), a caller past its deadline changes nothing.
`run_batch` here records what it was given: it is the batcher's own interface, not a stand-in."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from clarity.coordination.batcher import Batcher
from clarity.errors import CoordinationTimeout


class Recorder:
    def __init__(self, hold_s: dict[int, float] | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.ended: list[float] = []
        self.hold_s = hold_s or {}

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.batches.append(list(batch))
        time.sleep(self.hold_s.get(len(self.batches), 0.0))
        self.ended.append(time.monotonic())
        return [{"id": a["id"]} for a in batch]


def _submit(b: Batcher, rec: Recorder, i: int, out: dict[int, Any], deadline_s: float = 30.0) -> None:
    try:
        out[i] = (b.submit({"id": i}, time.monotonic() + deadline_s, lambda: None, rec), time.monotonic())
    except Exception as e:
        out[i] = (e, time.monotonic())


def _start(b: Batcher, rec: Recorder, ids: range, out: dict[int, Any],
           deadline_s: float = 30.0) -> list[threading.Thread]:
    ts = [threading.Thread(target=_submit, args=(b, rec, i, out, deadline_s)) for i in ids]
    for t in ts:
        t.start()
    return ts


def _queued(b: Batcher, n: int) -> None:
    end = time.monotonic() + 10
    while len(b._queue) < n:
        assert time.monotonic() < end, "items were not queued"
        time.sleep(0.005)


def test_lone_caller_runs_at_once_as_a_batch_of_one() -> None:
    b, rec = Batcher(threading.Lock(), 5.0), Recorder()
    t0 = time.monotonic()
    assert b.submit({"id": 1}, time.monotonic() + 5, lambda: None, rec) == {"id": 1}
    assert rec.batches == [[{"id": 1}]] and time.monotonic() - t0 < 1.0


def test_everything_queued_while_the_owner_is_busy_runs_as_one_batch() -> None:
    lock = threading.Lock()
    b, rec, out = Batcher(lock, 5.0), Recorder(), {}
    with lock:  # another operation holds the owner's lock
        ts = _start(b, rec, range(6), out)
        _queued(b, 6)
    for t in ts:
        t.join(10)
    assert len(rec.batches) == 1 and sorted(a["id"] for a in rec.batches[0]) == list(range(6))
    assert all(out[i][0] == {"id": i} for i in range(6))


class BargingLock:
    """A real lock; once `barge` is set, the moment it is released another operation takes it (as an
    operation arriving from a peer does, ahead of threads that were waiting) and holds it `hold_s`."""

    def __init__(self, hold_s: float) -> None:
        self._lock = threading.Lock()
        self.hold_s = hold_s
        self.barge = False
        self.held_by_other: list[float] = []

    def acquire(self, timeout: float = -1) -> bool:
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()
        if self.barge:
            self.barge = False
            self._lock.acquire()
            self.held_by_other.append(time.monotonic())
            threading.Timer(self.hold_s, self._lock.release).start()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_callers_of_a_finished_batch_return_at_once_not_behind_other_work() -> None:
    """Regression: callers waited for the operation lock to learn a result they already had, so when
    another operation (or the next batch) took the lock first, they waited for it too."""
    lock = BargingLock(hold_s=1.0)
    rec, out = Recorder(), {}
    b = Batcher(lock, 5.0)
    with lock:  # another operation holds the lock while six stores queue
        ts = _start(b, rec, range(6), out)
        _queued(b, 6)
        lock.barge = True  # the next release (the batch's end) is followed by another operation
    for t in ts:
        t.join(15)
    assert len(rec.batches) == 1 and lock.held_by_other
    late = {i: round(out[i][1] - rec.ended[0], 3) for i in range(6) if out[i][1] - rec.ended[0] > 0.5}
    assert not late, f"callers of the finished batch waited behind other work (s after it ended): {late}"
    assert all(out[i][0] == {"id": i} for i in range(6))


def test_a_caller_past_its_deadline_while_queued_changes_nothing() -> None:
    lock = threading.Lock()
    rec, out = Recorder(hold_s={1: 0.6}), {}
    b = Batcher(lock, 5.0)
    leader = _start(b, rec, range(1), out)
    while not rec.batches:
        time.sleep(0.002)
    late = _start(b, rec, range(1, 2), out, deadline_s=0.1)  # queued while batch 1 runs; gives up first
    for t in leader + late:
        t.join(10)
    assert isinstance(out[1][0], CoordinationTimeout) and "nothing was applied" in str(out[1][0])
    assert [[a["id"] for a in batch] for batch in rec.batches] == [[0]]
    assert not b._queue


def test_a_failed_check_fails_only_the_leaders_item() -> None:
    b, rec = Batcher(threading.Lock(), 5.0), Recorder()

    def not_owner() -> None:
        raise CoordinationTimeout("not the owner")

    with pytest.raises(CoordinationTimeout):
        b.submit({"id": 1}, time.monotonic() + 5, not_owner, rec)
    assert not rec.batches and not b._queue
    assert b.submit({"id": 2}, time.monotonic() + 5, lambda: None, rec) == {"id": 2}
