"""Acknowledgement ledgers and the one exactly-once verifier.

A writer appends one JSON line per event to its ledger (`Jsonl`, flushed line by line, so the
acknowledgements of a process killed mid-run survive). After the run, `verify(acks, stored)` compares
what was acknowledged with what the store holds:

- `lost`: acknowledged contents that are not in the store under the acknowledged id with that content
  (an id missing, or holding other content). Each acknowledged content counts once.
- `duplicates`: extra copies. A content stored k > 1 times adds k - 1 (so one content stored twice is
  one duplicate). Only stored memories count; acknowledging the same content twice (a retry answered
  with `duplicate_of`) is not a duplicate.
- `stored_not_acked`: contents in the store nobody acknowledged (a write that landed but whose reply was
  lost with its owner: allowed, reported for information).

`Verdict.ok` is True exactly when nothing was lost and nothing is duplicated.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class Jsonl:
    """Append-only JSONL file, flushed after every line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = path.open("a", encoding="utf-8")

    def write(self, **rec: Any) -> None:
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete, parseable line of `path` (a torn last line is skipped; a missing file is [])."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


class Tail:
    """Reads the complete lines appended to a JSONL file since the last `read()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.buf = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: the content sent and the id the server answered with."""

    content: str
    id: str


@dataclass
class Verdict:
    acked: int
    stored: int
    lost: int
    duplicates: int
    stored_not_acked: int
    content_mismatch: int
    lost_ids: list[str] = field(default_factory=list)
    duplicated_contents: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0

    def as_dict(self, sample: int = 20) -> dict[str, Any]:
        d = asdict(self)
        d["lost_ids"] = self.lost_ids[:sample]
        d["duplicated_contents"] = self.duplicated_contents[:sample]
        d["ok"] = self.ok
        return d


def verify(acks: Iterable[Ack], stored: Iterable[dict[str, Any]]) -> Verdict:
    """Exactly-once check of acknowledged writes against the stored memories (dicts with "id" and
    "content", as `list_memories(include_content=True)` returns them). See the module docstring."""
    by_content: dict[str, Ack] = {}
    for a in acks:
        by_content.setdefault(a.content, a)  # a retried content acknowledged twice counts once
    memories = list(stored)
    by_id: dict[str, Any] = {}
    for mem in memories:
        by_id.setdefault(mem["id"], mem.get("content"))
    lost_ids = [a.id for a in by_content.values() if by_id.get(a.id, None) != a.content]
    mismatch = sum(1 for a in by_content.values() if a.id in by_id and by_id[a.id] != a.content)
    counts = Counter(mem.get("content") for mem in memories)
    dup_contents = sorted(str(c) for c, n in counts.items() if n > 1)
    return Verdict(
        acked=len(by_content), stored=len(memories), lost=len(lost_ids),
        duplicates=sum(n - 1 for n in counts.values() if n > 1),
        stored_not_acked=sum(1 for c in counts if c not in by_content), content_mismatch=mismatch,
        lost_ids=lost_ids, duplicated_contents=dup_contents,
    )


def acks_from_records(records: Iterable[dict[str, Any]]) -> list[Ack]:
    """The acknowledgements among ledger records (`{"ev": "ack", "content": ..., "id": ...}`)."""
    return [Ack(str(r["content"]), str(r["id"])) for r in records if r.get("ev") == "ack"]
