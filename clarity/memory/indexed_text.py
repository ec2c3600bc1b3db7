"""What a memory is indexed by: the text its dense vector embeds and the text its BM25 vector counts.

Both are made from the memory's payload at every write that computes a vector (store, update, import,
restore) and never stored: the memory's `content` stays exactly what was given. Besides the content, a
recipe (`Recipe`) names which of the memory's other fields are indexed with it: its date (`created_at`,
as "18 May 2023"), its `context` (the strings of the JSON object, as "key: value"), its type and its
tags. Queries are embedded and counted as they are (only documents get the extra text).

Choice (measured on tests/eval and on the LoCoMo long-conversation benchmark, docs/bench/indexed_text.md,
MiniLM int8, remeasured after the hybrid floor moved after the fusion): `DENSE` embeds the context with the
content, `SPARSE` counts the date with the content. On LoCoMo (a turn's context: the previous turn) recall@5
went from 0.550 to 0.610 (single-hop 0.632 -> 0.717, temporal 0.629 -> 0.674, open-domain 0.249 -> 0.297,
multi-hop 0.314 -> 0.322); on the project's set every category stayed. Rejected: the date embedded too
(LoCoMo 0.615, but paraphrase 0.623/0.864 -> 0.602/0.856 hit@1/recall@5: a date shared by the memories of a
day pulls their vectors together), the context counted by BM25 too (0.622, but multi-hop 0.298, temporal
0.637), tags in BM25 (no gain, paraphrase 0.619/0.860), type and tags on both sides (no gain, paraphrase
0.602/0.862).

Guarantees: the same payload always gives the same texts; with a recipe naming none of the fields (or a
payload without them) the text is exactly the content. The context is bounded (`MAX_EXTRA_CHARS`) and
comes after the content, so the model's truncation (256 word pieces) cuts it before any content. Stores
written before (vectors of the content alone) need nothing: queries are unchanged, so their memories
are found as before (tests/test_indexed_text.py); only vectors computed from now on (a store, an update
of the content or context, an import, the BM25 vectors of a restore) use these texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clarity.encoders.sparse import SparseVec, encode_document

MAX_EXTRA_CHARS = 400  # the context's share of the indexed text (MiniLM reads ~256 word pieces)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


@dataclass(frozen=True)
class Recipe:
    """Which fields of a memory are indexed with its content."""

    date: bool = False
    context: bool = False
    memory_type: bool = False
    tags: bool = False


CONTENT_ONLY = Recipe()
DENSE = Recipe(context=True)
SPARSE = Recipe(date=True)


def date_text(created_at: object) -> str:
    """`created_at` (ISO 8601) as "18 May 2023", or "" when it is not a timestamp."""
    if not isinstance(created_at, str):
        return ""
    try:
        d = datetime.fromisoformat(created_at)
    except ValueError:
        return ""
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def _pairs(value: Any, key: str = "") -> Iterable[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _pairs(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _pairs(v, key)
    elif isinstance(value, str) and value.strip():
        yield f"{key}: {value.strip()}" if key else value.strip()
    elif isinstance(value, bool | int | float) and key:
        yield f"{key}: {value}"


def context_text(context: object) -> str:
    """The strings of a memory's `context` object, one "key: value" per line, at most MAX_EXTRA_CHARS."""
    text = "\n".join(_pairs(context)) if isinstance(context, Mapping) else ""
    return text[:MAX_EXTRA_CHARS]


def indexed_text(payload: Mapping[str, Any], recipe: Recipe) -> str:
    """The content of `payload` with the fields `recipe` names: a header line (date, type, tags) before
    it and the context after it. Exactly the content when none of them has a value."""
    content = str(payload.get("content", ""))
    head: list[str] = []
    if recipe.date:
        head.append(date_text(payload.get("created_at")))
    if recipe.memory_type and isinstance(payload.get("memory_type"), str):
        head.append(str(payload["memory_type"]))
    tags = payload.get("tags")
    if recipe.tags and isinstance(tags, list) and tags:
        head.append(" ".join(str(t) for t in tags)[:MAX_EXTRA_CHARS])
    head = [h for h in head if h]
    tail = context_text(payload.get("context")) if recipe.context else ""
    parts = ([" · ".join(head)] if head else []) + [content] + ([tail] if tail else [])
    return "\n".join(parts)


def dense_text(payload: Mapping[str, Any], recipe: Recipe | None = None) -> str:
    """The text a memory's dense vector embeds (recipe: `DENSE` unless given)."""
    return indexed_text(payload, DENSE if recipe is None else recipe)


def sparse_text(payload: Mapping[str, Any], recipe: Recipe | None = None) -> str:
    """The text a memory's BM25 vector counts (recipe: `SPARSE` unless given)."""
    return indexed_text(payload, SPARSE if recipe is None else recipe)


def sparse_vector(payload: Mapping[str, Any], recipe: Recipe | None = None) -> SparseVec | None:
    """The BM25 document vector of `sparse_text(payload)` (None when it has no indexable term)."""
    return encode_document(sparse_text(payload, recipe))
