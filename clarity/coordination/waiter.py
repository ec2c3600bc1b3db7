"""This process's own waiter ticket (tickets.py): how it asks the owner for a turn.

Guarantees:
- At most one ticket per process: `add()` creates it once and returns the same one until `drop()`
  (concurrent calls of one process share it).
- It is dropped (removed, its lock released) when this process takes the lease (ownership.py), when
  a call ends without the lease (coordinator.py), and when the process closes; a process killed
  outright leaves a ticket whose lock is free, which every other process sees as stale.
"""

from __future__ import annotations

import threading
from pathlib import Path

from clarity.coordination import tickets


class Waiter:
    """Thread-safe."""

    def __init__(self, waiters_dir: Path) -> None:
        self._dir = waiters_dir
        self._ticket: tickets.Ticket | None = None
        self._lock = threading.Lock()

    @property
    def ticket(self) -> tickets.Ticket | None:
        return self._ticket

    @property
    def path(self) -> Path | None:
        ticket = self._ticket
        return ticket.path if ticket is not None else None

    def add(self) -> tickets.Ticket:
        """Queue for a turn (once): this process's ticket."""
        with self._lock:
            if self._ticket is None:
                self._ticket = tickets.add(self._dir)
            return self._ticket

    def drop(self) -> None:
        """Leave the queue (nothing when not queued)."""
        with self._lock:
            ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.remove()
