"""What a command prints: the result on stdout (one JSON document with `--json`, else text), notes for
the person on stderr (`clarity: ...`, one line), and a progress bar on stderr.

stdout holds the result alone, so it can be piped; the progress bar shows only when stderr is a
terminal, and `rich` is imported only then.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson


def out(data: Any, as_json: bool, text: str) -> None:
    """The result: `data` as one indented JSON document with `as_json`, else `text` ending in one newline."""
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def note(text: str) -> None:
    """One line for the person on stderr (stdout keeps the result)."""
    sys.stderr.write(f"clarity: {text}\n")


@contextmanager
def progress(what: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (a spinner when `total` is unknown) on stderr when stderr is a terminal, and
    nothing at all when it is piped or redirected; yields `advance(n)`."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)
