"""A memory that comes from a file, checked as a store checks it: a record of a backup (restore), a point of a
qdrant-client store (import, migration).

The fields a store takes are checked by the store's own code: parsed as `StoreRequest` by `arguments.parse`, the
content by `model.check_content` with the configured size limit, so a memory from a file passes exactly
where storing it would. Then the fields only a stored memory has:
- `created_at`, `updated_at`: RFC 3339 timestamps (ISO 8601 with a time zone: `2025-01-31T09:30:00+00:00`,
  fraction and `Z` allowed). The engine's datetime index reads only that form: a week date or a basic-format
  time (which Python's `fromisoformat` takes) would be stored and then never listed;
- `content_hash`: recomputed from the content (dedup looks memories up by it);
- `supersedes`, `superseded_by`: memory ids (UUIDs), written in their canonical form;
- a vector: exactly the store's dimension of finite 32-bit floats, not all zero.
Every problem raises `BadRecord`: `field` names the top-level field, the message is `where: what` in the
words `arguments.parse` uses.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clarity.engines.points import BadRecord
from clarity.errors import InvalidArgument
from clarity.memory import model as m
from clarity.memory.arguments import parse
from clarity.memory.records import IMPORTED_FIELDS, entered, with_flag
from clarity.values import shown

REQUEST_FIELDS = tuple(k for k in IMPORTED_FIELDS if k != "id")  # what a store of the memory takes
STORED_FIELDS = (*REQUEST_FIELDS, "created_at", "updated_at", "content_hash", "superseded_by", "origin",
                 "origin_detail", "flagged", "flag_reviewed")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_FIELD = re.compile(r"[A-Za-z_]+")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")


def _bad(error: InvalidArgument) -> BadRecord:
    text = error.message.removeprefix("invalid arguments: ")
    found = _FIELD.match(text)
    return BadRecord(found.group() if found else "memory", text)


def request(memory_id: Any, fields: Mapping[str, Any], max_bytes: int) -> m.StoreRequest:
    """The store request of a memory with id `memory_id` and `fields` (the others are ignored), checked as a
    store checks it (`max_bytes`: the configured content limit)."""
    try:
        req = parse(m.StoreRequest, {"id": memory_id, **{k: fields[k] for k in REQUEST_FIELDS if k in fields}})
        m.check_content(req.content, max_bytes)
    except InvalidArgument as e:
        raise _bad(e) from None
    return req


def timestamp(fields: Mapping[str, Any], key: str) -> str:
    """`fields[key]` if it is an RFC 3339 timestamp with a time zone, else BadRecord."""
    if key not in fields:
        raise BadRecord(key, f"{key}: is required")
    value = fields[key]
    ok = isinstance(value, str) and _RFC3339.fullmatch(value) is not None
    if ok:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            ok = False  # a month 13, a 30 February
    if not ok:
        raise BadRecord(key, f"{key}: must be an ISO 8601 timestamp with a time zone (2025-01-31T09:30:00+00:00), "
                             f"not {shown(value)}")
    return str(value)


def memory_id(fields: Mapping[str, Any], key: str) -> str:
    """`fields[key]` as a memory id (a UUID, in its canonical form), else BadRecord."""
    value = fields.get(key)
    try:
        if isinstance(value, str):
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise BadRecord(key, f"{key}: must be a memory id (a UUID), not {shown(value)}")


def stored_payload(record_id: Any, payload: Any, max_bytes: int, source: str = "") -> tuple[str, dict[str, Any]]:
    """The id and payload of a stored memory (a backup's record), checked (see the module docstring) and
    written as a store writes them: the request's fields as parsed, the timestamps and links kept, the content
    hash recomputed; the origin the record has (a restore puts the store back as it was), else origin
    `restore` (`source`: the backup's name; a backup from before origins were kept), flagged from its text
    whatever the record says. A content holding `<private>` text is
    refused: its vector was made from the private text (a backup Clarity wrote never holds any)."""
    if not isinstance(payload, dict):
        raise BadRecord("payload", f"payload: must be an object, not {shown(payload)}")
    unknown = [k for k in payload if k not in STORED_FIELDS]
    if unknown:
        key = unknown[0] if _PLAIN_KEY.fullmatch(unknown[0]) else shown(unknown[0]).removeprefix("the string ")
        raise BadRecord("payload", f"payload.{key}: not a field of a memory (expected: {', '.join(STORED_FIELDS)})")
    req = request(record_id, payload, max_bytes)
    if req.content != payload.get("content"):
        raise BadRecord("content", "content: holds <private> text, which Clarity never stores (a backup Clarity "
                                   "wrote has none); remove it from the record")
    out: dict[str, Any] = {
        "content": req.content, "memory_type": req.memory_type, "importance": req.importance, "tags": req.tags,
        "metadata": req.metadata, "context": req.context, "created_at": timestamp(payload, "created_at"),
        "updated_at": timestamp(payload, "updated_at"), "content_hash": m.content_hash(req.content),
        "session": req.session,
    }
    if req.supersedes is not None:
        out["supersedes"] = req.supersedes
    if payload.get("superseded_by") is not None:
        out["superseded_by"] = memory_id(payload, "superseded_by")
    if payload.get("origin") in m.ORIGINS:
        out["origin"] = payload["origin"]
        detail = payload.get("origin_detail")
        line = m.detail_line(detail) if isinstance(detail, str) else ""
        if line:
            out["origin_detail"] = line
    else:
        entered(out, "restore", source)
    return req.id, with_flag(out)
