"""Progress on long runs, always on stderr (stdout carries results).

`progress(total, label)` is a context manager yielding a `Bar` with `update(completed, note)` and
`advance(n, note)`. On a terminal it draws a rich progress bar; otherwise it writes a plain line at
most every `every_s` seconds (and one at the end), so logs of CI runs still show where a run is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Bar:
    def __init__(self, total: int | None, label: str, rich_progress: Any = None, every_s: float = 2.0) -> None:
        self.total = total
        self.label = label
        self.completed = 0
        self.note = ""
        self._rich = rich_progress
        self._task = rich_progress.add_task(label, total=total, note="") if rich_progress is not None else None
        self._every = every_s
        self._last = 0.0
        self._shown: tuple[int, str] | None = None
        self._t0 = time.monotonic()

    def update(self, completed: int | None = None, note: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if note is not None:
            self.note = note
        if self._rich is not None:
            self._rich.update(self._task, completed=self.completed, note=self.note)
        else:
            now = time.monotonic()
            if now - self._last >= self._every:
                self._last = now
                self._line()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.update(self.completed + n, note)

    def _line(self) -> None:
        self._shown = (self.completed, self.note)
        of = f"/{self.total}" if self.total is not None else ""
        sys.stderr.write(f"[{self.label} {time.monotonic() - self._t0:6.1f}s] {self.completed}{of} {self.note}\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self._rich is None and self._shown != (self.completed, self.note):
            self._line()


@contextmanager
def progress(total: int | None, label: str, every_s: float = 2.0) -> Iterator[Bar]:
    """A progress bar for `total` steps (None: unknown) named `label`, on stderr."""
    if not sys.stderr.isatty():
        bar = Bar(total, label, every_s=every_s)
        try:
            yield bar
        finally:
            bar.finish()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[note]}"),
                    console=Console(stderr=True), refresh_per_second=5, transient=False)
    with prog:
        yield Bar(total, label, prog)
