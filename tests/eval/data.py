"""The retrieval evaluation set: loading and validation.

Three JSONL files next to this module, written for this project (see README.md here):
  memories.jsonl         one memory per line: id (a readable slug), memory_type, content, tags
  questions.jsonl        id, category (paraphrase | identifier | keyword), query, answers (memory slugs)
  near_duplicates.jsonl  id, kind (near_duplicate | related), a, b (two texts)

Memories are stored in Clarity under `uuid_for(slug)`, a fixed UUIDv5, so runs are reproducible.
`validate()` returns every problem it finds (empty list: the data is consistent); it guarantees that
every answer exists, ids are unique, and each identifier query occurs (case-insensitive substring) in
exactly its answer memories and in no other memory.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
CATEGORIES = ("paraphrase", "identifier", "keyword")
PAIR_KINDS = ("near_duplicate", "related")
_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4b7a-9c51-2f4e7d8a9b10")
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Memory:
    id: str
    memory_type: str
    content: str
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    query: str
    answers: list[str]


@dataclass(frozen=True)
class Pair:
    id: str
    kind: str
    a: str
    b: str


def uuid_for(slug: str) -> str:
    """The Clarity memory id used for the memory named `slug` (stable across runs)."""
    return str(uuid.uuid5(_NAMESPACE, slug))


def _lines(path: Path) -> list[dict[str, object]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path.name}:{n}: not JSON: {e}") from e
    return rows


def load_memories(data_dir: Path = DATA_DIR) -> list[Memory]:
    return [Memory(**r) for r in _lines(data_dir / "memories.jsonl")]  # type: ignore[arg-type]


def load_questions(data_dir: Path = DATA_DIR) -> list[Question]:
    return [Question(**r) for r in _lines(data_dir / "questions.jsonl")]  # type: ignore[arg-type]


def load_pairs(data_dir: Path = DATA_DIR) -> list[Pair]:
    return [Pair(**r) for r in _lines(data_dir / "near_duplicates.jsonl")]  # type: ignore[arg-type]


def _dupes(ids: list[str]) -> list[str]:
    return sorted(i for i, c in Counter(ids).items() if c > 1)


def validate(memories: list[Memory], questions: list[Question], pairs: list[Pair]) -> list[str]:
    """Every inconsistency in the set, as readable sentences (none: an empty list)."""
    problems: list[str] = []
    for d in _dupes([m.id for m in memories]):
        problems.append(f"duplicate memory id {d}")
    for d in _dupes([q.id for q in questions]):
        problems.append(f"duplicate question id {d}")
    for d in _dupes([p.id for p in pairs]):
        problems.append(f"duplicate pair id {d}")
    for d in _dupes([m.content for m in memories]):
        problems.append(f"two memories share the content {d[:40]!r}")
    known = {m.id for m in memories}
    for m in memories:
        if not m.content.strip():
            problems.append(f"memory {m.id} is empty")
        if not _TYPE_RE.match(m.memory_type):
            problems.append(f"memory {m.id} has an invalid type {m.memory_type!r}")
    lowered = {m.id: m.content.lower() for m in memories}
    for q in questions:
        if q.category not in CATEGORIES:
            problems.append(f"question {q.id} has unknown category {q.category!r}")
        if not q.query.strip():
            problems.append(f"question {q.id} is empty")
        if not q.answers:
            problems.append(f"question {q.id} has no answer")
        if len(set(q.answers)) != len(q.answers):
            problems.append(f"question {q.id} lists an answer twice")
        for a in q.answers:
            if a not in known:
                problems.append(f"question {q.id} names unknown memory {a}")
        if q.category == "identifier":
            needle = q.query.lower()
            holders = {mid for mid, text in lowered.items() if needle in text}
            if holders != set(q.answers):
                problems.append(f"identifier {q.query!r} ({q.id}) occurs in {sorted(holders)}, "
                                f"answers are {sorted(q.answers)}")
    for p in pairs:
        if p.kind not in PAIR_KINDS:
            problems.append(f"pair {p.id} has unknown kind {p.kind!r}")
        if not p.a.strip() or not p.b.strip() or p.a == p.b:
            problems.append(f"pair {p.id} needs two different non-empty texts")
    return problems
