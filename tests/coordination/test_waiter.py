"""Waiter (coordination/waiter.py): this process's one ticket, with real ticket files and locks in `tmp_path`."""

from __future__ import annotations

import threading
from pathlib import Path

from clarity.coordination import tickets
from clarity.coordination.waiter import Waiter
from clarity.platform import files, locks


def _dir(tmp_path: Path) -> Path:
    d = tmp_path / "coord" / "waiters"
    files.ensure_private_dir(d.parent, "coordination folder")
    return d


def test_one_ticket_per_process_even_from_many_threads(tmp_path: Path) -> None:
    w = Waiter(_dir(tmp_path))
    assert w.ticket is None and w.path is None
    got: list[tickets.Ticket] = []
    start = threading.Barrier(8)

    def add() -> None:
        start.wait()
        got.append(w.add())

    ts = [threading.Thread(target=add) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert len(got) == 8 and all(t is got[0] for t in got)
    assert [p.name for p in _dir(tmp_path).iterdir()] == [got[0].path.name] and w.path == got[0].path
    assert locks.probe(got[0].path) is locks.LockState.EXCLUSIVE
    assert [t["ticket"] for t in tickets.live(_dir(tmp_path))] == [got[0].path.name]
    w.drop()


def test_drop_removes_the_ticket_and_a_new_one_queues_behind_others(tmp_path: Path) -> None:
    mine, other = Waiter(_dir(tmp_path)), Waiter(_dir(tmp_path))
    first = mine.add()
    second = other.add()
    mine.drop()
    mine.drop()  # nothing left: no error
    assert mine.ticket is None and not first.path.exists()
    assert [t["ticket"] for t in tickets.live(_dir(tmp_path))] == [second.path.name]
    again = mine.add()
    assert again.path != first.path and again.path.name > second.path.name  # names order the waiters
    mine.drop()
    other.drop()
    assert list(_dir(tmp_path).iterdir()) == []
