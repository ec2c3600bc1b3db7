"""clarity serve | status | store | search | list | context | stats | export | import | backup | restore | doctor | demo

`serve` is the stdio MCP server; stdout is its MCP channel, so logs go to stderr and the log file.
The other commands are for people at a terminal; they run through the same coordinator as the
servers (forwarding to the owner when there is one), so they work while sessions are running.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from clarity import __version__
from clarity.config import Settings, load_settings
from clarity.errors import ClarityError
from clarity.memory.budget import DEFAULT_MAX_CHARS, MAX_MAX_CHARS, MIN_MAX_CHARS, fit_memories
from clarity.memory.model import new_id
from clarity.platform import require_posix


def setup_logging(settings: Settings, *, quiet_stderr: bool = False) -> None:
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(settings.log_level)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    err.setLevel("WARNING" if quiet_stderr else settings.log_level)
    root.addHandler(err)
    log_file = settings.layout.log_file
    os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))
    os.chmod(log_file, 0o600)  # also a log an older version made world-readable
    fh = logging.FileHandler(log_file, encoding="utf-8")
    fh.setFormatter(fmt)
    root.addHandler(fh)
    for noisy in ("httpx", "mcp", "fastembed", "huggingface_hub"):
        logging.getLogger(noisy).setLevel("WARNING")


def _out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def _limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates (one per connected peer, on the owner) its own malloc
    arena; an owner serving 8 sessions at 10k memories held ~250 MiB more than one alone. Two are
    plenty: operations run one at a time anyway."""
    from clarity.platform.memory import limit_arenas

    limit_arenas(n)


def cmd_serve(settings: Settings, _a: argparse.Namespace) -> int:
    import anyio

    from clarity.coordination.coordinator import Coordinator
    from clarity.mcp_server import build_server

    _limit_malloc_arenas()
    coordinator = Coordinator(settings, warm_model=True, standby=True)
    server = build_server(settings, coordinator)
    log = logging.getLogger("clarity.serve")

    def stop(signum: int, _frame: Any) -> None:
        log.info("received signal %s: finishing in-flight work and releasing the lease", signum)
        coordinator.close()
        logging.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("clarity %s serving on stdio, home %s, mode %s", __version__, settings.home,
             settings.coordination.mode)
    try:
        anyio.run(server.run_stdio_async)
    finally:
        log.info("stdin closed: releasing")
        coordinator.close()
        logging.shutdown()
    # the stdin reader thread may still block on read: leave without waiting for it
    os._exit(0)


def _with_coordinator(settings: Settings, op: str, args: dict[str, Any]) -> dict[str, Any]:
    from clarity.coordination.coordinator import Coordinator

    coordinator = Coordinator(settings)
    try:
        return coordinator.call(op, args)
    finally:
        coordinator.close()


def _fmt_memory(mem: dict[str, Any]) -> str:
    head = f"{mem['id']}  [{mem['memory_type']}]  importance {mem['importance']}"
    if mem.get("similarity") is not None:
        head += f"  similarity {mem['similarity']:.3f}"
    if mem.get("tags"):
        head += "  tags " + ",".join(mem["tags"])
    body = mem.get("content")
    return head + (f"\n    {body}" if body is not None else f"  {mem['created_at']}")


def cmd_store(settings: Settings, a: argparse.Namespace) -> int:
    args = {"id": new_id(), "content": a.text, "memory_type": a.type, "importance": a.importance,
            "tags": a.tag or [], "session": f"cli-{os.getpid()}"}
    res = _with_coordinator(settings, "store", args)
    what = "stored" if res["stored"] else f"already stored as {res['duplicate_of']}"
    if res.get("similar_to"):
        what += " (similar to " + ", ".join(f"{x['id']} at {x['similarity']:.2f}" for x in res["similar_to"]) + ")"
    _out(res, a.json, f"{what}: {res['id']}")
    return 0


def _trimmed_note(res: dict[str, Any]) -> str:
    parts = []
    if res["trimmed"]:
        parts.append(f"{len(res['trimmed'])} contents cut to fit --max-chars {res['max_chars']}")
    if res["omitted"]:
        parts.append(f"{res['omitted']} memories left out to fit --max-chars {res['max_chars']}")
    return ("\n(" + "; ".join(parts) + ")") if parts else ""


def _check_max_chars(n: int) -> int:
    if not MIN_MAX_CHARS <= n <= MAX_MAX_CHARS:
        raise ClarityError(f"--max-chars must be {MIN_MAX_CHARS}..{MAX_MAX_CHARS}, not {n}")
    return n


def cmd_search(settings: Settings, a: argparse.Namespace) -> int:
    args: dict[str, Any] = {"query": a.query, "limit": a.limit, "mode": a.mode}
    if a.min_similarity is not None:
        args["min_similarity"] = a.min_similarity
    for key in ("since", "until"):
        if getattr(a, key) is not None:
            args[key] = getattr(a, key)
    _check_max_chars(a.max_chars)
    res = fit_memories(_with_coordinator(settings, "retrieve", args), a.max_chars)
    text = ("\n".join(_fmt_memory(x) for x in res["memories"]) or "no memory matches") + _trimmed_note(res)
    _out(res, a.json, text)
    return 0


def cmd_list(settings: Settings, a: argparse.Namespace) -> int:
    _check_max_chars(a.max_chars)
    res = _with_coordinator(settings, "list", {"limit": a.limit, "offset": a.offset, "include_content": True})
    res = fit_memories(res, a.max_chars)
    text = f"{res['total']} memories\n" + "\n".join(_fmt_memory(x) for x in res["memories"]) + _trimmed_note(res)
    _out(res, a.json, text)
    return 0


def cmd_context(settings: Settings, a: argparse.Namespace) -> int:
    """The project's most useful memories as text for an agent (a SessionStart hook prints this)."""
    from clarity.context import MAX_LIMIT, gather, render
    from clarity.coordination.coordinator import Coordinator

    if not 1 <= a.limit <= MAX_LIMIT:
        raise ClarityError(f"--limit must be 1..{MAX_LIMIT}, not {a.limit}")
    if a.max_chars < 200:
        raise ClarityError(f"--max-chars must be at least 200, not {a.max_chars}")
    coordinator = Coordinator(settings)
    try:
        mems, total = gather(coordinator.call, a.limit)
    finally:
        coordinator.close()
    text = render(mems, total, a.max_chars, str(settings.home))
    res = {"home": str(settings.home), "home_source": settings.home_source, "total": total,
           "memories": mems, "text": text}
    _out(res, a.json, text)
    return 0


def cmd_stats(settings: Settings, a: argparse.Namespace) -> int:
    res = _with_coordinator(settings, "stats", {})
    lines = [f"{res['total']} memories in {res['home']}", f"engine {res['engine']}, model {res['model']} "
             f"({res['dims']} dims), storage {res['storage_bytes']} bytes"]
    lines += [f"  {t}: {n}" for t, n in res["by_type"].items()]
    _out(res, a.json, "\n".join(lines))
    return 0


def cmd_export(settings: Settings, a: argparse.Namespace) -> int:
    res = _with_coordinator(settings, "export", {})
    path = Path(a.file) if a.file else settings.backups_dir / "memories.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)  # every memory is in it: readable by this user only
        f.write(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    _out({"file": str(path), "count": res["count"]}, a.json, f"exported {res['count']} memories to {path}")
    return 0


def _import_qdrant(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.engines.import_qdrant import ImportStats, read_store

    stats = ImportStats()
    imported = skipped = 0
    for batch in read_store(Path(a.qdrant_path), a.collection, settings.memory.max_content_bytes, stats):
        res = _with_coordinator(settings, "import", {"memories": batch})
        imported += res["imported"]
        skipped += res["skipped"]
    out = {"read": stats.read, "imported": imported, "already_present": skipped, "skipped": stats.skipped}
    why = "".join(f", {n} skipped ({reason})" for reason, n in stats.skipped.items())
    _out(out, a.json, f"read {stats.read}, imported {imported}, {skipped} already present{why}")
    return 0


def cmd_import(settings: Settings, a: argparse.Namespace) -> int:
    if a.qdrant_path:
        if a.file:
            raise ClarityError("give either a FILE or --qdrant-path, not both")
        return _import_qdrant(settings, a)
    if not a.file:
        raise ClarityError("give a FILE (an export) or --qdrant-path PATH (a qdrant-client local store)")
    try:
        data = orjson.loads(Path(a.file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ClarityError(f"cannot read {a.file}: {e}") from e
    memories = data.get("memories") if isinstance(data, dict) else data
    res = _with_coordinator(settings, "import", {"memories": memories})
    _out(res, a.json, f"imported {res['imported']}, skipped {res['skipped']} already present")
    return 0


def cmd_backup(settings: Settings, a: argparse.Namespace) -> int:
    res = _with_coordinator(settings, "backup", {})
    _out(res, a.json, f"backed up {res['count']} memories to {res['file']}")
    return 0


def cmd_restore(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.maintenance import maintenance
    from clarity.engines.backup import restore_into_edge

    if settings.engine.kind != "edge":
        raise ClarityError("restore replaces an Edge store; with engine.kind = qdrant use `clarity import`")
    path = Path(a.file)
    if not path.is_file():
        raise ClarityError(f"{path} is not a file")
    with maintenance(settings, timeout_s=a.timeout):
        try:
            res = restore_into_edge(path, settings.qdrant_path, settings.embedding.model)
        except (ValueError, OSError) as e:
            raise ClarityError(f"nothing restored: {e}") from e
    _out(res, a.json, f"restored {res['restored']} memories from {path}")
    return 0


def _status_text(st: dict[str, Any]) -> str:
    o = st["owner"]
    lines = [f"mode {st['mode']}, home {st['home']}"]
    if st.get("home_source"):
        lines.append(f"store chosen by: {st['home_source']}")
    if o is None:
        lines.append("owner: none (nobody holds the lease)")
    elif o["state"] == "starting":
        lines.append("owner: a process is taking over the lease, STARTING")
    else:
        lines.append(f"owner: {o['where']}, epoch {o['epoch']}, since {o['since']}, "
                     f"heartbeat {o['heartbeat_age_s']} s ago, {o['state'].upper()}")
    lines.append(f"waiters: {len(st['waiters'])}" + "".join(f"\n  pid {w['pid']} since {w['since']}"
                                                           for w in st["waiters"]))
    return "\n".join(lines)


def cmd_status(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.status import status

    st = status(settings)
    _out(st, a.json, _status_text(st))
    return 0


def cmd_doctor(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.status import doctor

    res = doctor(settings)
    text = ("removed:\n" + "\n".join(f"  {r}" for r in res["removed"])) if res["removed"] else "nothing stale"
    _out(res, a.json, text + "\n" + _status_text(res["status"]))
    return 0


def cmd_demo(_settings: Settings | None, a: argparse.Namespace) -> int:
    from clarity.demo import run_demo

    return run_demo(a.home)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clarity", description="Project memory for coding agents over MCP")
    p.add_argument("--version", action="version", version=f"clarity {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--home", help="store folder (default: $CLARITY_HOME, else .claude/alunai-clarity "
                                       "in the project's git main checkout or the current directory)")
        sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    add("serve", "run the MCP server on stdio")
    add("status", "who owns the store now; never takes the lease")
    sp = add("store", "store a memory")
    sp.add_argument("text")
    sp.add_argument("--type", default="note")
    sp.add_argument("--importance", type=float, default=0.5)
    sp.add_argument("--tag", action="append")
    sp = add("search", "find memories by meaning and keywords")
    sp.add_argument("query")
    sp.add_argument("--limit", type=int, default=5)
    sp.add_argument("--mode", choices=("hybrid", "semantic", "keyword"), default="hybrid")
    sp.add_argument("--since", help="created at or after: ISO 8601 or 30m, 24h, 7d, 2w ago")
    sp.add_argument("--until", help="created at or before: ISO 8601 or 30m, 24h, 7d, 2w ago")
    sp.add_argument("--min-similarity", type=float)
    sp.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="fit the answer into this size")
    sp = add("list", "list memories, newest first")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--offset", type=int, default=0)
    sp.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="fit the answer into this size")
    sp = add("context", "the project's most useful memories, as text for an agent's session start")
    sp.add_argument("--limit", type=int, default=10, help="how many memories (1-100)")
    sp.add_argument("--max-chars", type=int, default=8000, help="size of the text (default 8000)")
    add("stats", "totals by type, engine, model, storage size")
    sp = add("export", "write every memory to a JSON file")
    sp.add_argument("file", nargs="?")
    sp = add("import", "store the memories of an exported JSON file, or of a qdrant-client local store")
    sp.add_argument("file", nargs="?")
    sp.add_argument("--qdrant-path", help="a qdrant-client local store (e.g. mcp-server-qdrant's QDRANT_LOCAL_PATH)")
    sp.add_argument("--collection", help="its collection (default: the only one)")
    add("backup", "write every memory with its vector to <home>/backups/ (sessions keep running)")
    sp = add("restore", "replace the store with a backup file (waits until no session owns the store)")
    sp.add_argument("file")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the store (default 60)")
    add("doctor", "remove what dead processes left in the coordination folder")
    add("demo", "start a real `clarity serve`, store and retrieve through MCP, print what happened")
    return p


COMMANDS = {
    "serve": cmd_serve, "status": cmd_status, "store": cmd_store, "search": cmd_search, "list": cmd_list,
    "context": cmd_context,
    "stats": cmd_stats, "export": cmd_export, "import": cmd_import, "doctor": cmd_doctor,
    "backup": cmd_backup, "restore": cmd_restore,
}


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        require_posix()  # Windows: one line that says to use WSL 2
        os.umask(0o077)  # everything this process creates (store, log, exports, sockets) is this user's only
        if a.command == "demo":
            return cmd_demo(None, a)
        settings = load_settings(a.home)
        setup_logging(settings, quiet_stderr=a.command not in ("serve",))
        return COMMANDS[a.command](settings, a)
    except ClarityError as e:
        sys.stderr.write(f"clarity: {e.message}\n")
        return 2
