"""Fault injection for the tests: the one place where production code stops on purpose.

Off unless the environment variable `CLARITY_FAULTS_DIR` names a folder (read by `clarity.config`, like
every variable). Then `point(name)`, called where a test needs to kill, freeze or race a process at a
known instant:
1. writes `<folder>/<name>` holding this process's pid (so the test knows who reached it),
2. waits while `<folder>/<name>.hold` exists, at most `HOLD_MAX_S` (then goes on by itself).

A test creates the `.hold` file before the process gets there, waits for the marker, does what it
came to do (SIGKILL, a concurrent write, ...) and removes the `.hold` file. No point ever changes what
the code does next, only when.

The points, in the order the code passes them:
- index build (`clarity.engines.edge.build`, `.build_child`): `index.exported` (the export is
  written), `index.child` (in the child, the points are in the new shard, before `optimize()`),
  `index.swap` (the journal is applied to the new shard, before the counts are compared),
  `index.switched` (the new generation is current);
- migration (`clarity.engines.edge.migrate`, `.migrate_child`): `migrate.copy` (in the child, half
  the points copied), `migrate.before-commit` (the shard is complete, before its rename),
  `migrate.after-commit` (renamed, before the legacy files move), `migrate.moving` (before
  `meta.json`, the trigger, moves).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from clarity.config import environment_value

ENV = "CLARITY_FAULTS_DIR"
HOLD_MAX_S = 120.0
_POLL_S = 0.02


def point(name: str) -> None:
    """See the module docstring; returns at once when fault injection is off."""
    folder = environment_value(ENV)
    if not folder:
        return
    marker = Path(folder) / name
    marker.write_text(str(os.getpid()))
    hold = Path(folder) / f"{name}.hold"
    end = time.monotonic() + HOLD_MAX_S
    while hold.exists() and time.monotonic() < end:
        time.sleep(_POLL_S)
