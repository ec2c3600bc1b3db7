"""Restoring a backup (written by `clarity.engines.backup`) into a fresh Edge shard.

Format: line 1 `{"format": "clarity-backup", "version": 1, "model", "dims", "count", "created_at"}`,
then one `{"id", "payload", "vector"}` per line. A backup is written to a temporary name and renamed
when complete (a half-written backup never has the final name). Restore builds the whole shard in a
new generation folder (`clarity.engines.edge.layout`), verifies the count, marks it `READY`, then makes
it current (`edge_layout.finish_restore`: the old shard goes to `<home>/backups/edge-replaced-*`); a
kill before `READY` leaves the store as it was (the next open removes the partial folder), a kill after
it is finished by the next open. Edge snapshots are not used: qdrant-edge-py 0.9
can unpack and apply snapshots but has no call that writes one. Before the swap the new shard gets its
quick index (`build_child.quick_index`: int8 copies of the vectors, as a migration gives them), so a large
restored store searches fast while the owner builds its HNSW index in the background.

Restore trusts nothing in the file. Before anything is touched, the header must be a clarity-backup
header of version 1 whose model is the configured one and whose `dims` is that model's dimension (the
default model's is known, another's from fastembed's list of models or else from the current shard): a
backup of other vectors would leave a store no call can use. Then every record is checked as a store
checks a memory (`clarity.memory.validate.stored_payload`: the store's own request parsing and content
limit, RFC 3339 timestamps, memory ids; the content hash recomputed) and its vector as one of this store
(`validate.vector`); an id may appear once. The first problem stops the restore with `RestoreRefused`,
`FILE:LINE: what is wrong`, and the new generation is removed: the store is as it was. Lines are read
with a bound (a line longer than any valid record could be is refused unread), and nothing in the file
(not JSON, truncated, binary, huge) ends in anything but that one sentence. Payloads are written in the
engine's one encoding (`edge_shard.edge_point`), so every value comes back exactly as it was backed up.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from clarity.engines.backup import FORMAT, MAX_DIMS, MAX_HEADER_BYTES, RECORD_KEYS, VERSION, WRITE_BATCH
from clarity.engines.points import BadRecord, vector
from clarity.errors import InvalidArgument
from clarity.memory.indexed_text import sparse_vector
from clarity.memory.model import MAX_JSON_BYTES
from clarity.memory.validate import stored_payload
from clarity.platform.files import open_regular
from clarity.values import shown


class RestoreRefused(InvalidArgument, ValueError):
    """A restore refused its file: nothing was changed. Also a ValueError: the CLI says "nothing restored:
    <message>" for those."""


def _open(path: Path) -> io.BufferedReader:
    """`path` opened for reading if it is a regular file (a FIFO or a device is refused, never read)."""
    f = open_regular(path)
    if f is None:
        raise RestoreRefused(f"{path} is not a regular file")
    return f


def _whole(n: Any) -> TypeGuard[int]:
    return isinstance(n, int) and not isinstance(n, bool)


def _header(f: io.BufferedReader, path: Path) -> dict[str, Any]:
    first = f.readline(MAX_HEADER_BYTES + 1)
    try:
        header = orjson.loads(first) if len(first) <= MAX_HEADER_BYTES else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RestoreRefused(f"{path} is not a clarity backup (its first line is not a clarity-backup header)")
    if header.get("version") != VERSION or not _whole(header.get("version")):
        raise RestoreRefused(f"{path} is a clarity backup of format version {shown(header.get('version'))}; this "
                             f"Clarity reads version {VERSION}")
    if not isinstance(header.get("model"), str):
        raise RestoreRefused(f"{path}: the header's model must be the name of an embedding model, not "
                             f"{shown(header.get('model'))}")
    dims = header.get("dims")
    if not _whole(dims) or not 1 <= dims <= MAX_DIMS:
        raise RestoreRefused(f"{path}: the header's dims must be a whole number from 1 to {MAX_DIMS}, not "
                             f"{shown(dims)}")
    count = header.get("count")
    if count is not None and (not _whole(count) or count < 0):
        raise RestoreRefused(f"{path}: the header's count must be a whole number of memories, not {shown(count)}")
    return header


def read_header(path: Path) -> dict[str, Any]:
    """The header of the backup at `path`, checked (format, version, model, dims, count); RestoreRefused
    when it is not one (OSError when it cannot be read)."""
    with _open(path) as f:
        return _header(f, path)


def model_dims(model: str) -> int | None:
    """The dimension of `model`'s vectors, known without loading it: the default model's, or one in
    fastembed's list of models; None otherwise."""
    from clarity.config import DEFAULT_MODEL
    from clarity.encoders.dense import DEFAULT_DIM

    if model == DEFAULT_MODEL:
        return DEFAULT_DIM
    try:
        from fastembed import TextEmbedding

        for known in TextEmbedding.list_supported_models():
            if str(known.get("model", "")).lower() == model.lower() and _whole(known.get("dim")):
                return int(known["dim"])
    except Exception:  # noqa: BLE001 - fastembed missing or changed: the shard's dimension decides
        return None
    return None


def shard_dims(qdrant_path: Path) -> int | None:
    """The dimension of the current Edge shard's dense vectors (from its configuration), if there is one."""
    from clarity.engines.edge.layout import current_dir
    from clarity.engines.edge.shard import DENSE, edge_dir

    try:
        with _open(current_dir(edge_dir(qdrant_path)) / "edge_config.json") as f:
            config = orjson.loads(f.read(1 << 20))
        size = config["vectors"][DENSE]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(size) if _whole(size) and size > 0 else None


def _configured_max_bytes(qdrant_path: Path) -> int:
    from clarity.config import load_settings

    return load_settings(qdrant_path.parent, create=False).memory.max_content_bytes


def line_limit(max_bytes: int, dims: int) -> int:
    """The longest line a valid record can be: its content (every character escaped at worst twice its
    bytes), metadata and context (each at most MAX_JSON_BYTES of JSON), the vector, and room for the rest."""
    return 2 * max_bytes + 4 * MAX_JSON_BYTES + 32 * dims + 64 * 1024


def _lines(f: io.BufferedReader, path: Path, limit: int) -> Iterator[tuple[int, bytes]]:
    """The lines after the header with their numbers, each read with a bound."""
    lineno = 1
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) > limit:
            raise RestoreRefused(f"{path}:{lineno}: the line is longer than {limit} bytes, more than a memory "
                                 "of this store can be")
        yield lineno, line


def _record(path: Path, lineno: int, line: bytes, dims: int, max_bytes: int) -> tuple[str, dict[str, Any], list[float]]:
    where = f"{path}:{lineno}"
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise RestoreRefused(f"{where}: not JSON ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(item, dict):
        raise RestoreRefused(f"{where}: a backup record must be an object with {', '.join(RECORD_KEYS)}, not "
                             f"{shown(item)}")
    for key in RECORD_KEYS:
        if key not in item:
            raise RestoreRefused(f"{where}: {key}: is required (a backup record has {', '.join(RECORD_KEYS)})")
    extra = [k for k in item if k not in RECORD_KEYS]
    if extra:
        raise RestoreRefused(f"{where}: {shown(extra[0]).removeprefix('the string ')}: not part of a backup "
                             f"record (it has {', '.join(RECORD_KEYS)})")
    try:
        memory_id, payload = stored_payload(item["id"], item["payload"], max_bytes, path.name)
        dense = vector(item["vector"], dims)
    except BadRecord as e:
        raise RestoreRefused(f"{where}: {e.message}") from None
    return memory_id, payload, dense


def restore_into_edge(path: Path, qdrant_path: Path, expected_model: str, *, dims: int | None = None,
                      max_content_bytes: int | None = None) -> dict[str, Any]:
    """Replace the Edge shard with the backup at `path` (see the module docstring). Caller holds the
    maintenance lock. `dims`: the configured model's dimension (default: `model_dims`, else the current
    shard's); `max_content_bytes`: the configured content limit (default: read from `<home>/config.json`).
    RestoreRefused (nothing changed) when the file is not a backup this store can take."""
    import qdrant_edge as q

    from clarity.engines.edge.build_child import quick_index
    from clarity.engines.edge.layout import current_dir, finish_restore, mark_ready, new_generation
    from clarity.engines.edge.shard import edge_dir, edge_point, open_shard

    with _open(path) as f:
        header = _header(f, path)
        if header["model"] != expected_model:
            raise RestoreRefused(f"{path} was made with the model {header['model']!r}, this store uses "
                                 f"{expected_model!r}: restore it into a home configured for that model")
        want = dims if dims is not None else model_dims(expected_model) or shard_dims(qdrant_path)
        if want is not None and header["dims"] != want:
            raise RestoreRefused(f"{path} holds {header['dims']}-dimensional vectors, the model {expected_model!r} "
                                 f"of this store makes {want}: a store restored from it could not be searched")
        dim: int = header["dims"]
        max_bytes = max_content_bytes if max_content_bytes is not None else _configured_max_bytes(qdrant_path)
        base = edge_dir(qdrant_path)
        finish_restore(base)  # an earlier restore that a kill interrupted
        nxt = new_generation(base)
        shard = open_shard(nxt, dim)
        count = 0
        try:
            seen: dict[str, int] = {}
            batch: list[Any] = []
            first = 2
            for lineno, line in _lines(f, path, line_limit(max_bytes, dim)):
                if not line.strip():
                    continue
                memory_id, payload, dense = _record(path, lineno, line, dim, max_bytes)
                if memory_id in seen:
                    raise RestoreRefused(f"{path}:{lineno}: the memory {memory_id} is already on line "
                                         f"{seen[memory_id]}")
                seen[memory_id] = lineno
                batch.append(edge_point(memory_id, dense, payload, sparse_vector(payload)))  # BM25 as a store makes it
                if len(batch) >= WRITE_BATCH:
                    _write(shard, batch, path, first, lineno)
                    count += len(batch)
                    batch, first = [], lineno + 1
            if batch:
                _write(shard, batch, path, first, lineno)
                count += len(batch)
            if header.get("count") is not None and header["count"] != count:
                raise RestoreRefused(f"{path}: the header says {header['count']} memories, the file holds {count} "
                                     "(it is incomplete or was edited)")
            got = int(shard.count(q.CountRequest(exact=True)))
            if got != count:
                raise RestoreRefused(f"{path}: read {count} memories, the new shard counts {got}")
            shard.flush()
        except BaseException:
            shard.close()
            shutil.rmtree(nxt, ignore_errors=True)
            raise
    shard.close()
    if count:  # int8 copies of the vectors, searched while the first HNSW index builds (as after a migration)
        quick_index(nxt, dim)
    mark_ready(nxt, current_dir(base))
    finish_restore(base)
    return {"restored": count, "file": str(path)}


def _write(shard: Any, batch: list[Any], path: Path, first: int, last: int) -> None:
    import qdrant_edge as q

    try:
        shard.update(q.UpdateOperation.upsert_points(batch))
    except Exception as e:  # noqa: BLE001 - the records were checked: say which lines the engine refused
        raise RestoreRefused(f"{path}:{first}-{last}: the engine refused these records "
                             f"({' '.join(str(e).split())[:300]})") from None
