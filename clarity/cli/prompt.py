"""Asking the person at the terminal: whether stdin is one, and a yes/no question with a time limit.

`confirm` says yes only for an explicit y/yes typed within `CONFIRM_WAIT_S`; silence, anything else,
or the end of input is no.
"""

from __future__ import annotations

import os
import sys

CONFIRM_WAIT_S = 300.0  # no answer within this long counts as no


def stdin_is_terminal() -> bool:
    """stdin is a terminal (a person could answer); False when there is no stdin at all."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # no stdin at all
        return False


def confirm(question: str) -> bool:
    """Ask on the terminal; yes only for y/yes, within CONFIRM_WAIT_S."""
    import select

    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    ready, _, _ = select.select([sys.stdin], [], [], CONFIRM_WAIT_S)
    if not ready:
        sys.stderr.write("\n")
        return False
    return sys.stdin.readline().strip().lower() in ("y", "yes")
