"""Memories in and out as files: `export` (every memory as JSON, to stdout or a file readable by this
user only; or, `--format markdown DIR`, one Markdown file per memory: clarity.cli.markdown) and `import`
(an export's JSON file, a Markdown export's folder or one of its files, or a qdrant-client local store,
re-embedded).

An import's input is read and checked whole by `prepare_import` before the store is made or asked:
a bad file or a bad memory in it stores nothing (exit 2). Memories then go in chunks of
`IMPORT_CHUNK`, one call each, with a progress bar at a terminal; ones already present are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from clarity.cli.output import note, out, progress
from clarity.cli.store_access import no_store, store_exists, with_coordinator
from clarity.config import Settings
from clarity.errors import ClarityError, InvalidArgument
from clarity.memory.model import detail_line

IMPORT_CHUNK = 256  # memories per import call: progress to show, frames well under the size limit


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
    if a.format == "markdown" and (target is None or target == "-"):
        raise InvalidArgument("--format markdown writes one file per memory: give the folder (DIR)")
    if store_exists(settings):
        with progress("exporting"):
            res = with_coordinator(settings, "export", {})
    else:
        res = {"model": settings.embedding.model, "count": 0, "memories": []}
        note(no_store(settings) + ": the export is empty")
    if a.format == "markdown":
        from clarity.cli.markdown import write_folder

        assert target is not None
        count = write_folder(Path(target), res["memories"])
        out({"folder": str(target), "count": count}, a.json, f"exported {count} memories to {target}/ as Markdown")
        return 0
    body = orjson.dumps(res, option=orjson.OPT_INDENT_2)
    if target is None or target == "-":
        sys.stdout.buffer.write(body + b"\n")
        sys.stdout.flush()
        return 0
    path = Path(target)
    _write_private(path, body)
    out({"file": str(path), "count": res["count"]}, a.json, f"exported {res['count']} memories to {path}")
    return 0


def _import(settings: Settings, batches: Iterable[list[dict[str, Any]]],
            advance: Callable[[int], None], source: str = "") -> tuple[int, int]:
    """Send each batch as one `import` call through the coordinator; (imported, already present).
    `source` (a file's name) becomes the imported memories' `origin_detail`."""
    from clarity.coordination.coordinator import Coordinator

    imported = skipped = 0
    label = detail_line(source)  # a file name may hold anything
    coordinator = Coordinator(settings)
    try:
        for batch in batches:
            res = coordinator.call("import", {"memories": batch, "source": label})
            imported += res["imported"]
            skipped += res["skipped"]
            advance(len(batch))
    finally:
        coordinator.close()
    return imported, skipped


def _import_qdrant(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.memory.import_qdrant import ImportStats, read_store

    stats = ImportStats()
    with progress(f"importing {a.qdrant_path}") as advance:
        imported, skipped = _import(settings, read_store(Path(a.qdrant_path), a.collection,
                                                         settings.memory.max_content_bytes, stats), advance,
                                    f"qdrant-client store {Path(a.qdrant_path).name}")
    result = {"read": stats.read, "imported": imported, "already_present": skipped, "skipped": stats.skipped}
    why = "".join(f", {n} skipped ({reason})" for reason, n in stats.skipped.items())
    out(result, a.json, f"read {stats.read}, imported {imported}, {skipped} already present{why}")
    return 0


def _check_importable(memories: Any, max_bytes: int, source: str) -> list[dict[str, Any]]:
    """Every memory of an export checked as the store checks it, before any is sent: a bad one stops
    the import before anything is stored (the import goes in chunks, each a call of its own)."""
    from clarity.memory.arguments import parse
    from clarity.memory.model import StoreRequest, check_content
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


def prepare_import(settings: Settings, a: argparse.Namespace) -> None:
    """The import's input checked before the store is made: a bad file changes nothing."""
    if a.qdrant_path:
        if a.file:
            raise ClarityError("give either a FILE or --qdrant-path, not both")
        if not Path(a.qdrant_path).is_dir():
            raise ClarityError(f"{a.qdrant_path} is not a folder (a qdrant-client local store is one)")
        return
    if not a.file:
        raise ClarityError("give a FILE (an export) or --qdrant-path PATH (a qdrant-client local store)")
    if Path(a.file).is_dir() or a.file.endswith(".md"):
        from clarity.cli.markdown import read_path

        a.memories = [_check_importable([memory], settings.memory.max_content_bytes, where)[0]
                      for where, memory in read_path(Path(a.file))]
        return
    try:
        data = orjson.loads(Path(a.file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ClarityError(f"cannot read {a.file}: {getattr(e, 'strerror', None) or e}") from e
    a.memories = _check_importable(data.get("memories") if isinstance(data, dict) else data,
                                   settings.memory.max_content_bytes, a.file)


def cmd_import(settings: Settings, a: argparse.Namespace) -> int:
    if a.qdrant_path:
        return _import_qdrant(settings, a)
    memories: list[dict[str, Any]] = a.memories  # read and checked by prepare_import

    with progress(f"importing {a.file}", len(memories)) as advance:
        imported, skipped = _import(settings, (memories[start:start + IMPORT_CHUNK]
                                               for start in range(0, len(memories), IMPORT_CHUNK)), advance,
                                    Path(a.file).name)
    out({"imported": imported, "skipped": skipped}, a.json,
        f"imported {imported}, skipped {skipped} already present")
    return 0
