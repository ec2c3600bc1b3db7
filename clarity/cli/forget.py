"""`clarity forget --session ID`: delete every memory one session wrote (what its hooks captured and what
its tools or commands stored, superseded ones included).

Through the coordination layer like every command (works while sessions run): the memories are listed
with the `sessions` filter, page by page, then deleted in calls of at most `DELETE_CHUNK` ids. It asks
first (a terminal) or needs `--yes` (no terminal: refused, exit 2, nothing deleted). A session with no
memories is said and exits 0 with nothing asked. A memory the session stores while this runs may be
left (it was not listed); run it again after the session ended. Prints how many were deleted.
"""

from __future__ import annotations

import argparse
from typing import Any

from clarity.cli.output import note, out
from clarity.cli.prompt import confirm, stdin_is_terminal
from clarity.cli.store_access import no_store, store_exists
from clarity.config import Settings
from clarity.errors import ClarityError
from clarity.memory.listing import list_all

PAGE = 1000
DELETE_CHUNK = 1000


def _session_ids(call: Any, session: str) -> list[str]:
    """The ids of every memory `session` wrote, superseded ones included."""
    listed = list_all(call, {"sessions": [session], "include_superseded": True}, page=PAGE)
    return list(dict.fromkeys(m["id"] for m in listed.memories))


def cmd_forget(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.memory.model import session_name

    session = session_name(a.session)  # one line, at most 200 characters (InvalidArgument: exit 2)
    if not store_exists(settings):
        note(no_store(settings))
        out({"session": session, "deleted": 0}, a.json, f"no memory of session {session}")
        return 0
    from clarity.coordination.coordinator import Coordinator

    coordinator = Coordinator(settings)
    try:
        ids = _session_ids(coordinator.call, session)
        if not ids:
            out({"session": session, "deleted": 0}, a.json, f"no memory of session {session}")
            return 0
        if not a.yes:
            question = f"delete {len(ids)} memories of session {session}"
            if not stdin_is_terminal():
                raise ClarityError(f"{question}: add --yes to confirm (there is no terminal to ask on)")
            if not confirm(question + "?"):
                out({"session": session, "deleted": 0}, a.json, "nothing deleted")
                return 0
        deleted = 0
        for start in range(0, len(ids), DELETE_CHUNK):
            res = coordinator.call("delete", {"memory_ids": ids[start:start + DELETE_CHUNK]})
            deleted += len(res["deleted"])
    finally:
        coordinator.close()
    out({"session": session, "deleted": deleted}, a.json, f"deleted {deleted} memories of session {session}")
    return 0
