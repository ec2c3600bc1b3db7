"""clarity serve | status | store | get | search | list | update | delete | context | stats | export | import |
backup | restore | doctor | demo

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
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson

from clarity import __version__
from clarity.config import DEFAULT_MODEL, Settings, load_settings
from clarity.errors import ClarityError, ConfigError, InvalidArgument, NotFound
from clarity.memory.budget import DEFAULT_MAX_CHARS, MAX_MAX_CHARS, MIN_MAX_CHARS, fit_memories
from clarity.memory.model import MAX_LIMIT, new_id
from clarity.platform import require_posix

LOG_MAX_BYTES = 5 * 1024 * 1024  # per file; with LOG_BACKUPS old files a home's logs stay under 20 MB
LOG_BACKUPS = 3
EXIT_NOT_DONE = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130
ADD_TO_CLAUDE = "claude mcp add clarity -- clarity serve"
IMPORT_CHUNK = 256  # memories per import call: progress to show, frames well under the size limit
# the commands that make the store when it is missing; every other one answers "no store yet"
CREATES_STORE = ("serve", "store", "import", "restore")


# ---- logging ----------------------------------------------------------------------------------

class _SharedLogHandler(RotatingFileHandler):
    """`<home>/logs/clarity.log`, size-capped and rotated, appended to by every session of the home.

    Several processes write the one file: when another one has rotated it (the name now points at a new
    file) this one reopens it instead of rotating again. A write that fails (disk full) is said once on
    stderr, in one line, and the file is dropped: records then go to the stderr handler alone, never a
    traceback."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        self._broken = False

    def shouldRollover(self, record: logging.LogRecord) -> int:  # noqa: N802 - logging's name
        if self.stream is not None:
            try:
                if os.stat(self.baseFilename).st_ino != os.fstat(self.stream.fileno()).st_ino:
                    self.stream.close()
                    self.stream = self._open()
            except OSError:
                pass  # gone or unreadable: the rotation below (or the write) finds out
        return super().shouldRollover(record)

    def emit(self, record: logging.LogRecord) -> None:
        if not self._broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if self._broken:
            return
        self._broken = True
        err = sys.exc_info()[1]
        why = getattr(err, "strerror", None) or err
        sys.stderr.write(f"clarity: cannot write the log file {self.baseFilename} ({why}): logging to stderr "
                         "only\n")


class _OneLine(logging.Formatter):
    """A warning at a terminal: `clarity: <message>`, one line, never a traceback (the log file has it)."""

    def format(self, record: logging.LogRecord) -> str:
        return "clarity: " + " ".join(record.getMessage().split())


def setup_logging(settings: Settings, *, quiet_stderr: bool = False, to_file: bool = True) -> None:
    """stderr and, with `to_file`, the home's rotated log file; a log file that cannot be opened
    (read-only home, a link, full disk) leaves stderr alone, said once. `quiet_stderr` (a terminal
    command): stderr shows warnings only, one line each (`_OneLine`)."""
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(settings.log_level)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(_OneLine() if quiet_stderr else fmt)
    err.setLevel("WARNING" if quiet_stderr else settings.log_level)
    root.addHandler(err)
    for noisy in ("httpx", "mcp", "fastembed", "huggingface_hub"):
        logging.getLogger(noisy).setLevel("WARNING")
    if not to_file:
        return
    log_file = settings.layout.log_file
    try:
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))
        os.chmod(log_file, 0o600)  # also a log an older version made world-readable
        fh = _SharedLogHandler(log_file)
    except OSError as e:
        sys.stderr.write(f"clarity: cannot write the log file {log_file} ({e.strerror or e}): logging to stderr "
                         "only\n")
        return
    fh.setFormatter(fmt)
    root.addHandler(fh)


# ---- output -----------------------------------------------------------------------------------

def _out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def _note(text: str) -> None:
    """One line for the person on stderr (stdout keeps the result)."""
    sys.stderr.write(f"clarity: {text}\n")


@contextmanager
def _progress(what: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (a spinner when `total` is unknown) on stderr when stderr is a terminal, and
    nothing at all when it is piped or redirected; yields `advance(n)`."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _store_exists(settings: Settings) -> bool:
    """A store was made here (or lives on a Qdrant server named by the settings)."""
    lay = settings.layout
    return lay.config_file.is_file() or lay.qdrant.is_dir() or bool(settings.engine.kind == "qdrant"
                                                                    and settings.engine.url)


def _no_store(settings: Settings) -> str:
    return (f"no store yet at {settings.home} (chosen by: {settings.home_source}); `clarity store` or the first "
            "`clarity serve` session creates it")


def _out_no_store(data: Any, a: argparse.Namespace, settings: Settings, text: str) -> None:
    """An empty answer where there is no store: the line says so (on stderr beside --json's document)."""
    if a.json:
        _note(_no_store(settings))
    _out(data, a.json, text)


def _limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates (one per connected peer, on the owner) its own malloc
    arena; an owner serving 8 sessions at 10k memories held ~250 MiB more than one alone. Two are
    plenty: operations run one at a time anyway."""
    from clarity.platform.memory import limit_arenas

    limit_arenas(n)


# ---- serve ------------------------------------------------------------------------------------

def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # no stdin at all
        return False


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


# ---- memory commands --------------------------------------------------------------------------

def _with_coordinator(settings: Settings, op: str, args: dict[str, Any]) -> dict[str, Any]:
    from clarity.coordination.coordinator import Coordinator

    coordinator = Coordinator(settings)
    try:
        return coordinator.call(op, args)
    finally:
        coordinator.close()


def _head(mem: dict[str, Any]) -> str:
    head = f"{mem['id']}  [{mem['memory_type']}]  importance {mem['importance']}"
    if mem.get("similarity") is not None:
        head += f"  similarity {mem['similarity']:.3f}"
    if mem.get("tags"):
        head += "  tags " + ",".join(mem["tags"])
    return head


def _fmt_memory(mem: dict[str, Any]) -> str:
    body = mem.get("content")
    return _head(mem) + (f"\n    {body}" if body is not None else f"  {mem['created_at']}")


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


def _filters(a: argparse.Namespace) -> dict[str, Any]:
    return {"types": a.type or None, "tags": a.tag or None}


def cmd_store(settings: Settings, a: argparse.Namespace) -> int:
    args = {"id": new_id(), "content": a.text, "memory_type": a.type, "importance": a.importance,
            "tags": a.tag or [], "session": f"cli-{os.getpid()}"}
    res = _with_coordinator(settings, "store", args)
    what = "stored" if res["stored"] else f"already stored as {res['duplicate_of']}"
    if res.get("similar_to"):
        what += " (similar to " + ", ".join(f"{x['id']} at {x['similarity']:.2f}" for x in res["similar_to"]) + ")"
    _out(res, a.json, f"{what}: {res['id']}")
    return 0


def cmd_get(settings: Settings, a: argparse.Namespace) -> int:
    if not _store_exists(settings):
        raise NotFound(f"no memory with id {a.id}: {_no_store(settings)}")
    mem = _with_coordinator(settings, "get", {"memory_id": a.id})
    lines = [_head(mem),
             f"created {mem['created_at']}, updated {mem['updated_at']}, session {mem.get('session') or '-'}"]
    if mem.get("supersedes"):
        lines.append(f"supersedes {mem['supersedes']}")
    if mem.get("superseded_by"):
        lines.append(f"superseded by {mem['superseded_by']}")
    for key in ("metadata", "context"):
        if mem.get(key):
            lines.append(f"{key}: " + orjson.dumps(mem[key]).decode())
    lines += ["", mem.get("content") or ""]
    _out(mem, a.json, "\n".join(lines))
    return 0


def cmd_update(settings: Settings, a: argparse.Namespace) -> int:
    updates: dict[str, Any] = {}
    if a.content is not None:
        updates["content"] = a.content
    if a.type is not None:
        updates["memory_type"] = a.type
    if a.importance is not None:
        updates["importance"] = a.importance
    if a.tag is not None:
        updates["tags"] = a.tag
    if not updates:
        raise InvalidArgument("nothing to update: give at least one of --content, --type, --importance, --tag")
    if not _store_exists(settings):
        raise NotFound(f"no memory with id {a.id}: {_no_store(settings)}")
    res = _with_coordinator(settings, "update", {"memory_id": a.id, "updates": updates})
    again = " (content embedded again)" if res["reembedded"] else ""
    _out(res, a.json, f"updated {res['id']}: {', '.join(res['updated_fields'])}{again}")
    return 0


def cmd_delete(settings: Settings, a: argparse.Namespace) -> int:
    if _store_exists(settings):
        res = _with_coordinator(settings, "delete", {"memory_ids": a.ids})
    else:
        from clarity.memory.model import DeleteRequest, parse

        # the ids are checked as the store would check them
        res = {"deleted": [], "not_found": parse(DeleteRequest, {"memory_ids": a.ids}).memory_ids}
        _note(_no_store(settings))
    parts = []
    if res["deleted"]:
        parts.append(f"deleted {len(res['deleted'])}: " + " ".join(res["deleted"]))
    if res["not_found"]:
        parts.append(f"not found {len(res['not_found'])}: " + " ".join(res["not_found"]))
    _out(res, a.json, "\n".join(parts))
    return EXIT_NOT_DONE if res["not_found"] else 0


def cmd_search(settings: Settings, a: argparse.Namespace) -> int:
    _check_max_chars(a.max_chars)
    args: dict[str, Any] = {"query": a.query, "limit": a.limit, "mode": a.mode, **_filters(a)}
    if a.min_similarity is not None:
        args["min_similarity"] = a.min_similarity
    for key in ("since", "until"):
        if getattr(a, key) is not None:
            args[key] = getattr(a, key)
    if _store_exists(settings):
        res = _with_coordinator(settings, "retrieve", args)
    else:
        from clarity.memory.model import RetrieveRequest, parse
        from clarity.memory.timefilter import created_range

        req = parse(RetrieveRequest, args)  # bad arguments are refused as the store would
        created_range(req.since, req.until)
        res = {"query": a.query, "mode": a.mode, "count": 0, "memories": [],
               "min_similarity": settings.memory.min_similarity if a.min_similarity is None else a.min_similarity}
    res = fit_memories(res, a.max_chars)
    if not _store_exists(settings):
        _out_no_store(res, a, settings, _no_store(settings))
        return 0
    text = ("\n".join(_fmt_memory(x) for x in res["memories"]) or "no memory matches") + _trimmed_note(res)
    _out(res, a.json, text)
    return 0


def _created(mem: dict[str, Any]) -> datetime:
    t = datetime.fromisoformat(mem["created_at"])
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _list_window(call: Callable[[str, dict[str, Any]], dict[str, Any]], a: argparse.Namespace,
                 flt: dict[str, Any]) -> dict[str, Any]:
    """`list` with `--since`/`--until`: the list runs newest first (by creation), so the memories created
    in the window are one run of positions; find it with pages of ids, then fetch the page asked for.
    Costs a page per 1,000 memories newer than the window's end (all of them without --since)."""
    from clarity.memory.timefilter import parse_time

    now = datetime.now(UTC)
    lo = parse_time(a.since, "since", now) if a.since is not None else None
    hi = parse_time(a.until, "until", now) if a.until is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgument(f"since ({lo.isoformat()}) is after until ({hi.isoformat()})")
    start: int | None = None
    end: int | None = None
    pos = 0
    while end is None:
        page = call("list", {**flt, "limit": MAX_LIMIT, "offset": pos})
        for i, mem in enumerate(page["memories"]):
            t = _created(mem)
            if start is None:
                if hi is not None and t > hi:
                    continue
                start = pos + i
            if lo is not None and t < lo:
                end = pos + i
                break
        pos += len(page["memories"])
        if end is None and (not page["memories"] or pos >= page["total"]):
            end = pos
    start = end if start is None else start
    first = start + a.offset
    n = min(a.limit, end - first)
    mems: list[dict[str, Any]] = []
    if n > 0:
        got = call("list", {**flt, "limit": n, "offset": first, "include_content": True})["memories"]
        mems = [m for m in got if (lo is None or _created(m) >= lo) and (hi is None or _created(m) <= hi)]
    return {"total": end - start, "offset": a.offset, "limit": a.limit, "memories": mems}


def cmd_list(settings: Settings, a: argparse.Namespace) -> int:
    _check_max_chars(a.max_chars)
    flt = _filters(a)
    if not _store_exists(settings):
        from clarity.memory.model import ListRequest, parse
        from clarity.memory.timefilter import created_range

        parse(ListRequest, {**flt, "limit": a.limit, "offset": a.offset})  # refused as the store would
        created_range(a.since, a.until)
        empty = fit_memories({"total": 0, "offset": a.offset, "limit": a.limit, "memories": []}, a.max_chars)
        _out_no_store(empty, a, settings, _no_store(settings))
        return 0
    from clarity.coordination.coordinator import Coordinator

    coordinator = Coordinator(settings)
    try:
        if a.since is None and a.until is None:
            res = coordinator.call("list", {**flt, "limit": a.limit, "offset": a.offset, "include_content": True})
        else:
            res = _list_window(coordinator.call, a, flt)
    finally:
        coordinator.close()
    res = fit_memories(res, a.max_chars)
    text = "\n".join([f"{res['total']} memories", *(_fmt_memory(x) for x in res["memories"])]) + _trimmed_note(res)
    _out(res, a.json, text)
    return 0


def cmd_context(settings: Settings, a: argparse.Namespace) -> int:
    """The project's most useful memories as text for an agent (a SessionStart hook prints this)."""
    from clarity.context import MAX_LIMIT as CONTEXT_MAX
    from clarity.context import gather, render

    if not 1 <= a.limit <= CONTEXT_MAX:
        raise ClarityError(f"--limit must be 1..{CONTEXT_MAX}, not {a.limit}")
    if a.max_chars < 200:
        raise ClarityError(f"--max-chars must be at least 200, not {a.max_chars}")
    mems: list[dict[str, Any]] = []
    total = 0
    if _store_exists(settings):
        from clarity.coordination.coordinator import Coordinator

        coordinator = Coordinator(settings)
        try:
            mems, total = gather(coordinator.call, a.limit)
        finally:
            coordinator.close()
    text = render(mems, total, a.max_chars, str(settings.home))
    res = {"home": str(settings.home), "home_source": settings.home_source, "store_exists": _store_exists(settings),
           "total": total, "memories": mems, "text": text}
    _out(res, a.json, text)
    return 0


def cmd_stats(settings: Settings, a: argparse.Namespace) -> int:
    if _store_exists(settings):
        res = _with_coordinator(settings, "stats", {})
    else:
        from clarity.encoders.dense import DEFAULT_DIM

        res = {"total": 0, "by_type": {}, "engine": settings.engine.kind, "model": settings.embedding.model,
               "dims": DEFAULT_DIM if settings.embedding.model == DEFAULT_MODEL else None, "storage_bytes": 0,
               "unindexed": 0, "index_building": False, "home": str(settings.home), "served_by_pid": None}
        _out_no_store(res, a, settings, _no_store(settings))
        return 0
    lines = [f"{res['total']} memories in {res['home']}", f"engine {res['engine']}, model {res['model']} "
             f"({res['dims']} dims), storage {res['storage_bytes']} bytes"]
    lines += [f"  {t}: {n}" for t, n in res["by_type"].items()]
    _out(res, a.json, "\n".join(lines))
    return 0


# ---- files in and out -------------------------------------------------------------------------

def _write_private(path: Path, data: bytes) -> None:
    """`path` (made or truncated) holding `data`, readable by this user only: every memory is in it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o600)
        f.write(data)


def cmd_export(settings: Settings, a: argparse.Namespace) -> int:
    if a.file and a.out and a.file != a.out:
        raise InvalidArgument("give the output file once: --out FILE")
    target = a.out or a.file
    if _store_exists(settings):
        with _progress("exporting"):
            res = _with_coordinator(settings, "export", {})
    else:
        res = {"model": settings.embedding.model, "count": 0, "memories": []}
        _note(_no_store(settings) + ": the export is empty")
    body = orjson.dumps(res, option=orjson.OPT_INDENT_2)
    if target is None or target == "-":
        sys.stdout.buffer.write(body + b"\n")
        sys.stdout.flush()
        return 0
    path = Path(target)
    _write_private(path, body)
    _out({"file": str(path), "count": res["count"]}, a.json, f"exported {res['count']} memories to {path}")
    return 0


def _import_qdrant(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.coordinator import Coordinator
    from clarity.engines.import_qdrant import ImportStats, read_store

    stats = ImportStats()
    imported = skipped = 0
    coordinator = Coordinator(settings)
    try:
        with _progress(f"importing {a.qdrant_path}") as advance:
            for batch in read_store(Path(a.qdrant_path), a.collection, settings.memory.max_content_bytes, stats):
                res = coordinator.call("import", {"memories": batch})
                imported += res["imported"]
                skipped += res["skipped"]
                advance(len(batch))
    finally:
        coordinator.close()
    out = {"read": stats.read, "imported": imported, "already_present": skipped, "skipped": stats.skipped}
    why = "".join(f", {n} skipped ({reason})" for reason, n in stats.skipped.items())
    _out(out, a.json, f"read {stats.read}, imported {imported}, {skipped} already present{why}")
    return 0


def _check_importable(memories: Any, max_bytes: int, source: str) -> list[dict[str, Any]]:
    """Every memory of an export checked as the store checks it, before any is sent: a bad one stops
    the import before anything is stored (the import goes in chunks, each a call of its own)."""
    from clarity.memory.model import StoreRequest, check_content, parse
    from clarity.memory.records import IMPORTED_FIELDS

    if not isinstance(memories, list):
        raise InvalidArgument(f"{source} holds no list of memories (an export has {{\"memories\": [...]}})")
    for n, item in enumerate(memories, start=1):
        if not isinstance(item, dict):
            raise InvalidArgument(f"{source}: memory {n} is not a JSON object: nothing imported")
        try:
            req = parse(StoreRequest, {k: item[k] for k in IMPORTED_FIELDS if k in item})
            check_content(req.content, max_bytes)
        except InvalidArgument as e:
            raise InvalidArgument(f"{source}: memory {n}: {e.message}: nothing imported") from None
    return memories


def _prepare_import(settings: Settings, a: argparse.Namespace) -> None:
    """The import's input checked before the store is made: a bad file changes nothing."""
    if a.qdrant_path:
        if a.file:
            raise ClarityError("give either a FILE or --qdrant-path, not both")
        if not Path(a.qdrant_path).is_dir():
            raise ClarityError(f"{a.qdrant_path} is not a folder (a qdrant-client local store is one)")
        return
    if not a.file:
        raise ClarityError("give a FILE (an export) or --qdrant-path PATH (a qdrant-client local store)")
    try:
        data = orjson.loads(Path(a.file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ClarityError(f"cannot read {a.file}: {getattr(e, 'strerror', None) or e}") from e
    a.memories = _check_importable(data.get("memories") if isinstance(data, dict) else data,
                                   settings.memory.max_content_bytes, a.file)


def cmd_import(settings: Settings, a: argparse.Namespace) -> int:
    if a.qdrant_path:
        return _import_qdrant(settings, a)
    memories: list[dict[str, Any]] = a.memories  # read and checked by _prepare_import
    from clarity.coordination.coordinator import Coordinator

    imported = skipped = 0
    coordinator = Coordinator(settings)
    try:
        with _progress(f"importing {a.file}", len(memories)) as advance:
            for start in range(0, len(memories), IMPORT_CHUNK):
                chunk = memories[start:start + IMPORT_CHUNK]
                res = coordinator.call("import", {"memories": chunk})
                imported += res["imported"]
                skipped += res["skipped"]
                advance(len(chunk))
    finally:
        coordinator.close()
    _out({"imported": imported, "skipped": skipped}, a.json,
         f"imported {imported}, skipped {skipped} already present")
    return 0


def cmd_backup(settings: Settings, a: argparse.Namespace) -> int:
    if not _store_exists(settings):
        _out_no_store({"file": None, "count": 0, "bytes": 0}, a, settings, _no_store(settings) + ": nothing to back up")
        return 0
    with _progress("backing up"):
        res = _with_coordinator(settings, "backup", {})
    _out(res, a.json, f"backed up {res['count']} memories to {res['file']}")
    return 0


CONFIRM_WAIT_S = 300.0  # no answer within this long counts as no


def _confirm(question: str) -> bool:
    """Ask on the terminal; yes only for y/yes, within CONFIRM_WAIT_S."""
    import select

    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    ready, _, _ = select.select([sys.stdin], [], [], CONFIRM_WAIT_S)
    if not ready:
        sys.stderr.write("\n")
        return False
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _prepare_restore(settings: Settings, a: argparse.Namespace) -> None:
    """The backup checked (a file, a backup's header) before the store is made or asked about."""
    from clarity.engines.backup import read_header

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
    from clarity.engines.backup import restore_into_edge

    path, header = Path(a.file), a.header  # checked by _prepare_restore
    holds = _with_coordinator(settings, "stats", {})["total"]
    if holds and not a.yes:
        question = (f"the store {settings.home} holds {holds} memories; restore replaces them with the "
                    f"{header.get('count', '?')} of {path}")
        if not stdin_is_terminal():
            raise ClarityError(f"{question}: add --yes to confirm (there is no terminal to ask on)")
        if not _confirm(question + ". Replace them?"):
            _note("nothing restored")
            return EXIT_NOT_DONE
    held_by = owner(settings)
    if held_by is not None:
        _note(f"waiting up to {a.timeout:g} s for {held_by['where']} (a `clarity serve` session) to let go of "
              "the store: restore needs every session of this store stopped")
    with maintenance(settings, timeout_s=a.timeout), _progress(f"restoring {path}"):
        try:
            res = restore_into_edge(path, settings.qdrant_path, settings.embedding.model)
        except (ValueError, OSError) as e:
            raise ClarityError(f"nothing restored: {e}") from e
    _out({**res, "replaced": holds}, a.json, f"restored {res['restored']} memories from {path} (replacing {holds})")
    return 0


# ---- coordination -----------------------------------------------------------------------------

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


def _status_without_store(settings: Settings) -> dict[str, Any]:
    """Status where there is no store yet: the same keys (status reads, it creates nothing)."""
    from clarity.coordination.status import status

    return {"store_exists": False, **status(settings)}


def cmd_status(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.status import status

    if not _store_exists(settings):
        _out(_status_without_store(settings), a.json,
             f"no store yet: it would be at {settings.home} (chosen by: {settings.home_source}); `clarity store` "
             "or the first `clarity serve` session creates it")
        return 0
    st = {"store_exists": True, **status(settings)}
    _out(st, a.json, _status_text(st))
    return 0


def cmd_doctor(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.status import doctor

    if not _store_exists(settings):
        _out_no_store({"removed": [], "status": _status_without_store(settings)}, a, settings,
                      "nothing to clean: " + _no_store(settings))
        return 0
    res = doctor(settings)
    text = ("removed:\n" + "\n".join(f"  {r}" for r in res["removed"])) if res["removed"] else "nothing stale"
    _out(res, a.json, text + "\n" + _status_text(res["status"]))
    return 0


def cmd_demo(_settings: Settings | None, a: argparse.Namespace) -> int:
    from clarity.demo import run_demo

    return run_demo(a.home, as_json=a.json)


# ---- the parser -------------------------------------------------------------------------------

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
    add("stats", "totals by type, engine, model, storage size")
    sp = add("export", "write every memory as JSON, to stdout or a file (readable by you only)")
    sp.add_argument("file", nargs="?", help="the same as --out FILE")
    sp.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    sp = add("import", "store the memories of an exported JSON file, or of a qdrant-client local store")
    sp.add_argument("file", nargs="?", help="an export (`clarity export`)")
    sp.add_argument("--qdrant-path", metavar="PATH",
                    help="a qdrant-client local store (e.g. mcp-server-qdrant's QDRANT_LOCAL_PATH); re-embeds")
    sp.add_argument("--collection", help="its collection (default: the only one)")
    add("backup", "write every memory with its vector to <home>/backups/ (sessions keep running)")
    sp = add("restore", "replace the store with a backup file (waits until no session owns the store)")
    sp.add_argument("file", help="a backup (`clarity backup`)")
    sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the sessions to let go")
    sp.add_argument("--yes", action="store_true", help="replace a store that holds memories without asking")
    add("doctor", "remove what dead processes left in the coordination folder")
    add("demo", "two real `clarity serve` sessions share a store; the owner is killed, nothing is lost")
    return p


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve, "status": cmd_status, "store": cmd_store, "get": cmd_get, "update": cmd_update,
    "delete": cmd_delete, "search": cmd_search, "list": cmd_list, "context": cmd_context, "stats": cmd_stats,
    "export": cmd_export, "import": cmd_import, "doctor": cmd_doctor, "backup": cmd_backup,
    "restore": cmd_restore,
}


PREPARE: dict[str, Callable[[Settings, argparse.Namespace], None]] = {
    "import": _prepare_import, "restore": _prepare_restore,
}


def _run(a: argparse.Namespace) -> int:
    require_posix()  # Windows: one line that says to use WSL 2
    os.umask(0o077)  # everything this process creates (store, log, exports, sockets) is this user's only
    if a.command == "demo":
        return cmd_demo(None, a)
    if a.command == "serve" and stdin_is_terminal():
        _note("`clarity serve` is an MCP server that an MCP client starts and talks to over stdin/stdout, "
              f"not a terminal: add it to Claude Code with `{ADD_TO_CLAUDE}`")
        return EXIT_REFUSED
    settings = load_settings(a.home, create=False)  # creates nothing: a read-only command may need no store
    if a.command in PREPARE:
        PREPARE[a.command](settings, a)  # bad input is refused before the store is made
    exists = _store_exists(settings)
    if exists or a.command in CREATES_STORE:
        settings = load_settings(a.home)  # makes (or checks) the folders and config.json
        if a.command != "status" and not os.access(settings.coordination_dir, os.W_OK):
            raise ConfigError(f"the store {settings.home} cannot be written here ({settings.coordination_dir} is "
                              "read-only), and sessions take turns through lock files in it: make it writable "
                              "or choose another store with --home DIR")
    setup_logging(settings, quiet_stderr=a.command != "serve", to_file=exists or a.command in CREATES_STORE)
    return COMMANDS[a.command](settings, a)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return _run(a)
    except NotFound as e:
        _note(e.message)
        return EXIT_NOT_DONE
    except ClarityError as e:
        _note(e.message)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        _note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`clarity export | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_NOT_DONE
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _note(f"{where}{e.strerror or e}")
        return EXIT_NOT_DONE
