"""clarity serve | status | store | get | search | list | update | delete | context | stats | export | import |
backup | restore | doctor | demo | forget | hook

`serve` is the stdio MCP server; stdout is its MCP channel, so logs go to stderr and the log file.
The other commands are for people at a terminal (and scripts: `--json` on every command prints one
JSON document with stable keys); they run through the same coordinator as the servers (forwarding to
the owner when there is one), so they work while sessions are running.

What a user can cause gets one line on stderr, never a traceback: a bad `--home` or an unwritable
project folder (which folder, and `--home` as the fix), Ctrl-C (exit 130), `clarity serve` typed at a
terminal (exit 2: how to add it to a client instead). Exit codes: 0 done, 1 not found / not done,
2 refused (bad input, configuration, a busy store), 130 interrupted.

Read-only commands (`status`, `search`, `list`, `context`, `get`, `export`, `stats`, `doctor`,
`backup`) on a project with no store create nothing: they say so in one line and answer empty.
`--home` and `--json` go before or after the command.

This package is the public face (`main`, the `clarity` command and `python -m clarity`); its modules:
`parser` (the arguments), `run` (dispatch: what is checked, whether the store is made), `exits` (exit
codes, one-line errors), `output` (stdout, stderr notes, progress), `prompt` (asking at the terminal),
`logs` (stderr and the rotated log file), `store_access` (is there a store, one coordinator call),
`render` (text forms), and the commands by kind: `memories` (store/get/update/delete), `queries`
(search/list/context), `status` (status/stats/doctor), `transfer` (export/import), `backups`
(backup/restore), `serve` (serve/demo), `forget` (forget --session), `hooks` (hook: Claude Code's hooks,
which exit 0 whatever happens), `markdown` (the Markdown export's files). Every command imports what it
uses only when it runs: importing this package loads neither the engine nor the model.
"""

from __future__ import annotations

from clarity.cli.exits import handled
from clarity.cli.logs import LOG_BACKUPS, LOG_MAX_BYTES, setup_logging
from clarity.cli.parser import build_parser
from clarity.cli.run import run

__all__ = ["LOG_BACKUPS", "LOG_MAX_BYTES", "build_parser", "main", "setup_logging"]


def main(argv: list[str] | None = None) -> int:
    """The `clarity` command: parse `argv` (default: the process's), run the command, return its exit code."""
    a = build_parser().parse_args(argv)
    return handled(lambda: run(a))
