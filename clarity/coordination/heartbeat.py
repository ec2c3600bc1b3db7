"""Keeping the lease alive and handing it off: the heartbeat thread and the clock of the owner's turn.

Guarantees:
- While this process holds the lease, its record's `heartbeat_at` is refreshed every `heartbeat_s`
  (`Lease.heartbeat`); when that finds the lease lost (its lock file removed or replaced) the owner
  steps down ("the lease file was removed or replaced") and the record is not written.
- A handoff is due when someone waits (a live waiter ticket, tickets.py) and this turn has lasted its
  quantum (`handoff_quantum_s`), counted from the end of the turn's first operation (so opening the
  engine does not eat the turn). The thread looks for waiters every 0.1 s (every heartbeat when that is
  shorter), or at once when woken (`wake`: a forwarded operation found the handoff due but must not step
  down on its connection thread, whose reply is not sent yet), so an idle owner hands off promptly.
- One thread per process, started at the first take of the lease and kept across turns. `stop()`
  makes it end within one wait; `join()` waits for it (at most 5 s, and never from the thread itself,
  which may be the one stepping down).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from clarity.config import CoordinationSettings
from clarity.coordination import tickets
from clarity.coordination.lease import Lease

log = logging.getLogger(__name__)


class Heartbeat:
    """The owner's heartbeat thread and turn clock. Writes only its own fields; `step_down` is the
    owner's (ownership.py)."""

    def __init__(self, lease: Lease, cfg: CoordinationSettings, step_down: Callable[[str], None]) -> None:
        self._lease = lease
        self._cfg = cfg
        self._step_down = step_down
        self._turn_started: float | None = None  # monotonic: when this turn's first operation ended
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the turn ----------------------------------------------------------------------------

    def new_turn(self) -> None:
        """This process just took the lease: the quantum starts at the end of its first operation."""
        self._turn_started = None

    def operation_done(self) -> None:
        """An operation of this turn ended (only the first one starts the quantum)."""
        if self._turn_started is None:
            self._turn_started = time.monotonic()

    def handoff_due(self) -> bool:
        """Someone waits and this turn has lasted its quantum."""
        started = self._turn_started
        if (not self._lease.held or started is None
                or time.monotonic() - started < self._cfg.handoff_quantum_s):
            return False
        return bool(tickets.live(self._lease.waiters_dir))

    # ---- the thread --------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for waiters now rather than at the next tick."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread (once; later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="clarity-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        """Refresh the record every `heartbeat_s`; look for waiters ten times as often (or at once when
        woken), so an idle owner hands off promptly."""
        last_beat = 0.0
        while not self._stop.is_set():
            self._wake.wait(min(0.1, self._cfg.heartbeat_s))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not self._lease.held:
                    continue
                if time.monotonic() - last_beat >= self._cfg.heartbeat_s:
                    last_beat = time.monotonic()
                    if not self._lease.heartbeat():
                        self._step_down("the lease file was removed or replaced")
                        continue
                if self.handoff_due():
                    self._step_down("handing off to waiters")
            except Exception:
                log.exception("heartbeat failed")
