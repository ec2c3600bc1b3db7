"""An owner socket that stopped accepting: a Unix listener whose backlog is full, so that the next connect
is refused at once with EAGAIN (or, blocking, would wait)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def full_backlog(path: Path, most: int = 64) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """Listen at `path` without ever accepting, and connect to it (non-blocking) until a connect is refused.

    Yields the listener and the connections that got into its backlog (nothing was sent on them). Skips the
    test when `most` connections never fill the backlog. On leaving, however it is left, every one of those
    sockets and the listener are closed."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(str(path))
        listener.listen(0)
        for _ in range(most):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(path))
            except BlockingIOError:
                s.close()
                break
            except BaseException:
                s.close()
                raise
            fillers.append(s)
        else:
            import pytest  # only here: importing tests.harness does not import pytest

            pytest.skip(f"the backlog of {path} never filled ({most} connections)")
        yield listener, fillers
    finally:
        for s in fillers:
            s.close()
        listener.close()
