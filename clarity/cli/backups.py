"""Backups: `backup` (every memory with its vector to `<home>/backups/`, while sessions keep running)
and `restore` (replace an Edge store with a backup file).

`prepare_restore` checks the backup (a file, a backup's header) before the store is made or asked
about. `restore` over a store that holds memories asks first (a terminal) or needs `--yes` (exit 2
without one, exit 1 on a "no"), then waits up to `--timeout` for every session to let go of the store.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clarity.cli.exits import EXIT_NOT_DONE
from clarity.cli.output import note, out, progress
from clarity.cli.prompt import confirm, stdin_is_terminal
from clarity.cli.store_access import no_store, out_no_store, store_exists, with_coordinator
from clarity.config import Settings
from clarity.errors import ClarityError


def cmd_backup(settings: Settings, a: argparse.Namespace) -> int:
    if not store_exists(settings):
        out_no_store({"file": None, "count": 0, "bytes": 0}, a, settings, no_store(settings) + ": nothing to back up")
        return 0
    with progress("backing up"):
        res = with_coordinator(settings, "backup", {})
    out(res, a.json, f"backed up {res['count']} memories to {res['file']}")
    return 0


def prepare_restore(settings: Settings, a: argparse.Namespace) -> None:
    """The backup checked (a file, a backup's header) before the store is made or asked about."""
    from clarity.memory.restore import read_header

    if settings.engine.kind != "edge":
        raise ClarityError("restore replaces an Edge store; with engine.kind = qdrant use `clarity import`")
    path = Path(a.file)
    if not path.is_file():
        raise ClarityError(f"{path} is not a file")
    try:
        a.header = read_header(path)
    except (ValueError, OSError) as e:
        raise ClarityError(f"nothing restored: {e}") from e


def cmd_restore(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.maintenance import maintenance
    from clarity.coordination.status import owner
    from clarity.memory.restore import restore_into_edge

    path, header = Path(a.file), a.header  # checked by prepare_restore
    holds = with_coordinator(settings, "stats", {})["total"]
    if holds and not a.yes:
        question = (f"the store {settings.home} holds {holds} memories; restore replaces them with the "
                    f"{header.get('count', '?')} of {path}")
        if not stdin_is_terminal():
            raise ClarityError(f"{question}: add --yes to confirm (there is no terminal to ask on)")
        if not confirm(question + ". Replace them?"):
            note("nothing restored")
            return EXIT_NOT_DONE
    held_by = owner(settings)
    if held_by is not None:
        note(f"waiting up to {a.timeout:g} s for {held_by['where']} (a `clarity serve` session) to let go of "
             "the store: restore needs every session of this store stopped")
    with maintenance(settings, timeout_s=a.timeout), progress(f"restoring {path}"):
        try:
            res = restore_into_edge(path, settings.qdrant_path, settings.embedding.model)
        except (ValueError, OSError) as e:
            raise ClarityError(f"nothing restored: {e}") from e
    out({**res, "replaced": holds}, a.json, f"restored {res['restored']} memories from {path} (replacing {holds})")
    return 0
