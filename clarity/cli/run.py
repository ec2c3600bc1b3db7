"""Running one parsed command: which function serves it, what is checked before the store is touched,
and whether the store is made.

Order, for every command: POSIX only (Windows gets one line: use WSL 2); umask 077 (everything made is
this user's only); `demo` runs on its own; `serve` typed at a terminal is refused (exit 2, with how to
add it to a client); the settings are loaded without creating anything; the command's input is checked
(`PREPARE`) before the store is made; only `CREATES_STORE` commands make a missing store, every other
one answers "no store yet"; a store that cannot be written is refused unless the command is `status`;
then logging is set up and the command runs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from clarity.cli.backups import cmd_backup, cmd_restore, prepare_restore
from clarity.cli.exits import EXIT_REFUSED
from clarity.cli.forget import cmd_forget
from clarity.cli.hooks import cmd_hook
from clarity.cli.logs import setup_logging
from clarity.cli.memories import cmd_delete, cmd_get, cmd_review, cmd_store, cmd_update
from clarity.cli.output import note
from clarity.cli.prompt import stdin_is_terminal
from clarity.cli.queries import cmd_context, cmd_list, cmd_search
from clarity.cli.serve import ADD_TO_CLAUDE, cmd_demo, cmd_serve
from clarity.cli.status import cmd_doctor, cmd_stats, cmd_status
from clarity.cli.store_access import store_exists
from clarity.cli.transfer import cmd_export, cmd_import, prepare_import
from clarity.cli.ui import cmd_ui
from clarity.config import Settings, load_settings
from clarity.errors import ConfigError
from clarity.platform import require_posix

# the commands that make the store when it is missing; every other one answers "no store yet"
CREATES_STORE = ("serve", "store", "import", "restore")

COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve, "status": cmd_status, "store": cmd_store, "get": cmd_get, "update": cmd_update,
    "delete": cmd_delete, "search": cmd_search, "list": cmd_list, "context": cmd_context, "stats": cmd_stats,
    "export": cmd_export, "import": cmd_import, "doctor": cmd_doctor, "backup": cmd_backup,
    "restore": cmd_restore, "ui": cmd_ui, "forget": cmd_forget, "review": cmd_review,
}

PREPARE: dict[str, Callable[[Settings, argparse.Namespace], None]] = {
    "import": prepare_import, "restore": prepare_restore,
}


def run(a: argparse.Namespace) -> int:
    """Run the parsed command `a`; its exit code. A user's mistake is raised (see `clarity.cli.exits`)."""
    require_posix()  # Windows: one line that says to use WSL 2
    os.umask(0o077)  # everything this process creates (store, log, exports, sockets) is this user's only
    if a.command == "demo":
        return cmd_demo(None, a)
    if a.command == "hook":  # a Claude Code hook: never fails the agent, so it checks and says everything itself
        return cmd_hook(a)
    if a.command == "serve" and stdin_is_terminal():
        note("`clarity serve` is an MCP server that an MCP client starts and talks to over stdin/stdout, "
             f"not a terminal: add it to Claude Code with `{ADD_TO_CLAUDE}`")
        return EXIT_REFUSED
    settings = load_settings(a.home, create=False)  # creates nothing: a read-only command may need no store
    if a.command in PREPARE:
        PREPARE[a.command](settings, a)  # bad input is refused before the store is made
    exists = store_exists(settings)
    if exists or a.command in CREATES_STORE:
        settings = load_settings(a.home)  # makes (or checks) the folders and config.json
        if a.command != "status" and not os.access(settings.coordination_dir, os.W_OK):
            raise ConfigError(f"the store {settings.home} cannot be written here ({settings.coordination_dir} is "
                              "read-only), and sessions take turns through lock files in it: make it writable "
                              "or choose another store with --home DIR")
    setup_logging(settings, quiet_stderr=a.command != "serve", to_file=exists or a.command in CREATES_STORE)
    return COMMANDS[a.command](settings, a)
