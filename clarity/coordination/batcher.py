"""Group commit at the owner: stores that arrive while the owner is busy run together.

How: every store joins a queue. When no caller leads, it becomes the leader: it takes the owner's
operation lock (the same lock every other operation takes), runs its checks (`start`: deadline, still
the owner), takes every queued item whose caller's deadline has not passed, runs them as one batch
(`run_batch`: one embedding call for their texts, one engine write for their points, one flush for
their acknowledgements where the durability choice flushes) and hands every caller its own result;
then the next queued caller leads. The others wait on a condition, not on the lock, so every caller of
a finished batch returns at once (it never waits behind the next batch for a result it already has).
A lone caller queues, leads at once and runs a batch of one: no waiting for more, no added latency.
A caller that finds a batch under way calls `prepare(args)` before it waits (the owner starts embedding
its text on the second core: `Embedder.start_early`), so its batch finds the vector ready.

Guarantees:
- Every item is run at most once, in exactly one batch, and its caller gets that batch's result for
  it (a result or the per-item error).
- A caller whose wait (to lead, or for the lock) reaches its deadline while its item is still queued
  removes it:
  nothing was applied (CoordinationTimeout). Once taken into a batch, the item runs to its end and
  its caller waits for it (bounded by `finish_s`), as with any operation already started.
- Deadlines are `time.monotonic()` instants: a wall-clock step neither ends a wait early nor
  stretches it.
- The leader's failed checks (not the owner any more) fail its own item only; the others stay queued
  and each caller runs the same checks when it gets the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clarity import timings
from clarity.errors import CoordinationTimeout

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from clarity.memory.model import Args

Result = dict[str, Any]


@dataclass
class _Item:
    args: Args
    deadline: float  # time.monotonic()
    queued_at: float = field(default_factory=time.perf_counter)
    taken: bool = False
    result: Result | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, result: Result | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Batcher:
    """One queue of stores in front of the owner's operation lock. Thread-safe."""

    def __init__(self, op_lock: Any, finish_s: float) -> None:
        self.op_lock = op_lock
        self.finish_s = finish_s
        self._cv = threading.Condition()
        self._queue: list[_Item] = []
        self._leading = False  # a caller is the leader: it waits for the operation lock or runs a batch

    def submit(self, args: Args, deadline: float, start: Callable[[], None],
               run_batch: Callable[[list[Args]], list[Result | BaseException]],
               prepare: Callable[[Args], None] | None = None) -> Result:
        item = _Item(args, deadline)
        with self._cv:
            self._queue.append(item)
            busy = self._leading
        if busy and prepare is not None:
            try:
                prepare(args)
            except Exception:  # an optimisation: the batch embeds the text itself
                log.exception("batcher: preparing a queued store failed")
        with self._cv:
            while self._leading and not item.done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            lead = not item.done.is_set() and not item.taken
            if lead and self._leading:  # the deadline passed while others' batches ran
                self._queue.remove(item)
                raise CoordinationTimeout("store: the owner was busy with other operations until the "
                                          "caller's deadline; nothing was applied")
            self._leading = self._leading or lead
        if not lead:  # done, or running in a batch (it runs to its end)
            return self._await(item)
        try:
            self._lead(item, deadline, start, run_batch)
        finally:
            with self._cv:
                self._leading = False
                self._cv.notify_all()
        return item.outcome()

    def _await(self, item: _Item) -> Result:
        if not item.done.wait(self.finish_s):
            raise CoordinationTimeout("store: the owner started it but did not finish in time; the "
                                      "outcome is unknown (retrying is safe: its id was chosen first)")
        return item.outcome()

    def _drop(self, item: _Item) -> None:
        with self._cv:
            if not item.taken and item in self._queue:
                self._queue.remove(item)

    def _lead(self, item: _Item, deadline: float, start: Callable[[], None],
              run_batch: Callable[[list[Args]], list[Result | BaseException]]) -> None:
        """As the leader (its item still queued): take the operation lock, check, run all that is queued."""
        if not self.op_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._drop(item)
            raise CoordinationTimeout("store: the owner was busy with other operations until the "
                                      "caller's deadline; nothing was applied")
        try:
            try:
                start()
            except BaseException:
                self._drop(item)
                raise
            now, t_start = time.monotonic(), time.perf_counter()
            with self._cv:
                batch, self._queue = self._queue, []
                for it in batch:
                    it.taken = True
                    timings.record("queue_wait", t_start - it.queued_at)  # from submit to its batch's start
            live = []
            for it in batch:
                if now > it.deadline:
                    it.finish(error=CoordinationTimeout(
                        "store: the caller's deadline passed while it waited for the owner; nothing was applied"))
                else:
                    live.append(it)
            self._run(live, run_batch)
        finally:
            self.op_lock.release()

    def _run(self, batch: list[_Item],
             run_batch: Callable[[list[Args]], list[Result | BaseException]]) -> None:
        if not batch:
            return
        timings.count("store_batches")
        timings.count("batched_stores", len(batch))
        try:
            with timings.timed("execute"):
                results = run_batch([it.args for it in batch])
        except BaseException as e:  # the whole batch failed: nothing of it was acknowledged
            for it in batch:
                it.finish(error=e)
            return
        for it, r in zip(batch, results, strict=True):
            if isinstance(r, BaseException):
                it.finish(error=r)
            else:
                it.finish(result=r)
