"""The argparse parser of `clarity`: every command, its arguments and their help.

Guarantees: `--home` and `--json` work before or after the command (the command's copies have no
default, so they never hide the main parser's); every option's help ends with its default where it
has one. Building the parser imports no command's dependencies.
"""

from __future__ import annotations

import argparse

from clarity import __version__
from clarity.cli.serve import ADD_TO_CLAUDE
from clarity.memory.budget import DEFAULT_MAX_CHARS, MAX_MAX_CHARS, MIN_MAX_CHARS
from clarity.memory.model import MAX_LIMIT, ORIGINS


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help  # nothing to show: an unset option, a flag
        return super()._get_help_string(action)


HOME_HELP = ("the store folder (default: $CLARITY_HOME, else .claude/alunai-clarity in the project's git main "
             "checkout or the current directory)")


def _global_options(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
    """--home and --json, on the main parser (with defaults) and on every command (`on_command`: without
    defaults, so the option works before or after the command and the command's copy never hides the
    main one's)."""
    parser.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS if on_command else None, help=HOME_HELP)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if on_command else False,
                        help="print one JSON document (stable keys) instead of text")


def _add_filters(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--type", action="append", metavar="TYPE",
                    help="only memories of this type (repeat for several)")
    sp.add_argument("--tag", action="append", metavar="TAG", help="only memories with this tag (repeat: any of them)")
    sp.add_argument("--since", metavar="WHEN",
                    help="only memories created at or after WHEN: ISO 8601 (2026-03-01) or an age (30m, 24h, 7d, 2w)")
    sp.add_argument("--until", metavar="WHEN", help="only memories created at or before WHEN (same forms)")
    sp.add_argument("--session", action="append", metavar="ID", help="only memories written by this session (repeat)")
    sp.add_argument("--origin", action="append", choices=ORIGINS,
                    help="only memories that entered this way (repeat)")
    sp.add_argument("--flagged", action=argparse.BooleanOptionalAction, default=None,
                    help="only memories flagged as reading like instructions to an agent (--no-flagged: the others)")


def _max_chars(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, metavar="N",
                    help=f"fit the answer into N characters ({MIN_MAX_CHARS}-{MAX_MAX_CHARS}); long contents "
                         "are cut with a marker")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clarity", description="Project memory for coding agents over MCP",
                                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"clarity {__version__}")
    _global_options(p, on_command=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, formatter_class=_Help)
        _global_options(sp, on_command=True)
        return sp

    add("serve", "run the MCP server on stdio (an MCP client starts it: " + ADD_TO_CLAUDE + ")")
    add("status", "which store, who owns it now; never takes the lease")
    sp = add("store", "store a memory")
    sp.add_argument("text", help="the memory's content")
    sp.add_argument("--type", default="note", help="its type: a slug such as note, decision, fact, preference")
    sp.add_argument("--importance", type=float, default=0.5, help="0 (trivial) to 1 (critical)")
    sp.add_argument("--tag", action="append", metavar="TAG", help="a tag (repeat for several)")
    sp = add("get", "print one memory whole")
    sp.add_argument("id", help="the memory's id")
    sp = add("update", "change fields of a memory (the others stay)")
    sp.add_argument("id", help="the memory's id")
    sp.add_argument("--content", help="new content (embedded again)")
    sp.add_argument("--type", help="new type")
    sp.add_argument("--importance", type=float, help="new importance, 0 to 1")
    sp.add_argument("--tag", action="append", metavar="TAG", help="the new tags, replacing the old (repeat)")
    sp = add("review", "mark a flagged memory as reviewed: shown to agents like any other from then on")
    sp.add_argument("id", help="the memory's id")
    sp.add_argument("--yes", action="store_true", help="do not ask")
    sp = add("delete", "delete memories")
    sp.add_argument("ids", nargs="+", metavar="ID", help="ids of the memories to delete")
    sp = add("search", "find memories by meaning and keywords, best first")
    sp.add_argument("query", help="what to look for, in your own words")
    sp.add_argument("--limit", type=int, default=5, help="at most this many (1-100)")
    sp.add_argument("--mode", choices=("hybrid", "semantic", "keyword"), default="hybrid",
                    help="hybrid: meaning and keywords; semantic or keyword: one side only")
    _add_filters(sp)
    sp.add_argument("--min-similarity", type=float, metavar="S",
                    help="cosine floor, -1..1 (default: memory.min_similarity of the config, 0.25)")
    _max_chars(sp)
    sp = add("list", "list memories, newest first")
    sp.add_argument("--limit", type=int, default=20, help=f"page size (1-{MAX_LIMIT})")
    sp.add_argument("--offset", type=int, default=0, help="skip this many")
    _add_filters(sp)
    _max_chars(sp)
    sp = add("context", "the project's most useful memories, as text for an agent's session start")
    sp.add_argument("--limit", type=int, default=10, help="how many memories (1-100)")
    sp.add_argument("--max-chars", type=int, default=8000, metavar="N", help="size of the text in characters")
    sp.add_argument("--include-flagged", action="store_true",
                    help="also show memories flagged as reading like instructions (quoted, with a warning)")
    add("stats", "totals by type, engine, model, storage size")
    sp = add("export", "write every memory as JSON, to stdout or a file, or as Markdown files in a folder "
                       "(--format markdown DIR); readable by you only")
    sp.add_argument("file", nargs="?", help="the same as --out FILE (with --format markdown: the folder)")
    sp.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    sp.add_argument("--format", choices=("json", "markdown"), default="json",
                    help="json: one document; markdown: one file per memory in a folder")
    sp = add("import", "store the memories of an exported JSON file, or of a qdrant-client local store")
    sp.add_argument("file", nargs="?", help="an export (`clarity export`): a JSON file, or a Markdown export's "
                                            "folder or one of its files")
    sp.add_argument("--qdrant-path", metavar="PATH",
                    help="a qdrant-client local store (e.g. mcp-server-qdrant's QDRANT_LOCAL_PATH); re-embeds")
    sp.add_argument("--collection", help="its collection (default: the only one)")
    add("backup", "write every memory with its vector to <home>/backups/ (sessions keep running)")
    sp = add("restore", "replace the store with a backup file (waits until no session owns the store)")
    sp.add_argument("file", help="a backup (`clarity backup`)")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the sessions to let go")
    sp.add_argument("--yes", action="store_true", help="replace a store that holds memories without asking")
    add("doctor", "remove what dead processes left in the coordination folder")
    sp = add("forget", "delete every memory one session wrote (its hooks' digests, its tools' memories)")
    sp.add_argument("--session", required=True, metavar="ID", help="the session's id (a memory's `session`)")
    sp.add_argument("--yes", action="store_true", help="delete without asking")
    sp = add("hook", "for Claude Code's hooks: store a digest of the session (JSON input on stdin); always "
                     "exits 0 and prints nothing on stdout")
    sp.add_argument("event", choices=("stop", "session-end", "pre-compact", "post-compact"),
                    help="the hook's event")
    sp.add_argument("--deadline", type=float, default=10.0, metavar="S",
                    help="seconds the hook may take (0-600) before it gives up")
    sp.add_argument("--verbose", action="store_true", help="say on stderr what was stored")
    add("demo", "two real `clarity serve` sessions share a store; the owner is killed, nothing is lost")
    sp = add("ui", "a local web page over the store: search, edit, sessions, stats (on 127.0.0.1 only)")
    sp.add_argument("--port", type=int, default=0, help="the port to listen on; 0 picks a free one")
    sp.add_argument("--open", action="store_true", help="also open the page in the default browser")
    return p
