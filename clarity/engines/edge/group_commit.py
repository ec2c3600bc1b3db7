"""Group commit: one flush covers every write that returned before it started.

`GroupCommit(flush).commit()` returns once a flush that *started after the call* has completed, so
every write that returned before `commit()` was called is on disk. Concurrent callers share flushes:
while one flush runs, the callers that arrive wait for the next one, which covers them all.
`Flusher` runs `commit()` from a background thread at most `interval_s` after `mark_dirty()`.
A flush that raises wakes its waiters with that error (no caller waits forever on a failed flush).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class GroupCommit:
    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._cond = threading.Condition()
        self._requested = 0   # tickets handed out
        self._done = 0        # every ticket <= _done is covered by a completed flush
        self._running = False
        self.flushes = 0      # how many flushes ran (for measurements)

    def commit(self) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._done < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                target = self._requested
                self._cond.release()
                error: BaseException | None = None
                try:
                    self._flush()
                except BaseException as e:  # noqa: BLE001 - re-raised below after waking waiters
                    error = e
                finally:
                    self._cond.acquire()
                    self._running = False
                    if error is None:
                        self._done = max(self._done, target)
                        self.flushes += 1
                    self._cond.notify_all()
                if error is not None:
                    raise error


class Flusher:
    """Calls `commit()` in a daemon thread at most `interval_s` after the first unsynced write."""

    def __init__(self, group: GroupCommit, interval_s: float) -> None:
        self._group = group
        self._interval = interval_s
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clarity-edge-flush", daemon=True)
        self._thread.start()

    def mark_dirty(self) -> None:
        self._dirty.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(self._interval):
                return
            self._dirty.clear()
            try:
                self._group.commit()
            except Exception:
                log.exception("background flush failed; will retry")
                self._dirty.set()

    def stop(self) -> None:
        """Stop the thread (does not flush: the caller flushes once more when closing)."""
        self._stop.set()
        self._dirty.set()
        self._thread.join(timeout=30)
