"""BM25 sparse vectors for memories and queries, computed in this process with Qdrant Edge's `Bm25`.

Both engines store the same vectors (the Edge shard and qdrant-client's `bm25` sparse slot, each with
the IDF modifier, so the engine weighs rare terms), so both rank keyword matches alike. Nothing is
downloaded: the tokenizer, stemmer and stop words ship inside `qdrant-edge-py`.

Choice (measured on tests/eval, docs/bench/retrieval.md): the `Code` tokenizer (splits `snake_case`,
`camelCase`, dotted and path identifiers into their parts; see below for the whole), English stop words and
Snowball English stemming. The engines always use it; `tokenizer="word"` exists for the evaluation
to compare (it passes the tokenizer both when it writes the vectors and when it queries: a store's
vectors follow the tokenizer they were written with, and a query must use the same one).

Whole identifiers: `Code` keeps a `snake_case` or `camelCase` identifier whole besides its parts, but
splits on `.`, `/`, `-` and `:` and keeps only the parts, so `services/api/handlers/auth.py` or
`rotate-api-key` matched every memory naming `api` or `auth` as well as the one naming it. Every such
identifier is therefore also counted as one term, its letters and digits run together
(`servicesapihandlersauthpy`, `rotateapikey`), in memories and queries alike (`_whole_identifiers`).
Measured on tests/eval (MiniLM int8, default floor): identifier hit@1 0.956 -> 0.978, every other
category within one question. A store written before has no such terms: its memories are found by
their parts as before, and get them when their BM25 vectors are written again (an update of the
content, an import, a restore).

Guarantees: the same text always gives the same vector; an empty vector (no indexable token) is
returned as `None`, and such a memory is found only by meaning.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Literal

SparseVec = tuple[list[int], list[float]]
Tokenizer = Literal["code", "word"]

DEFAULT_TOKENIZER: Tokenizer = "code"
_models: dict[str, Any] = {}  # one Bm25 per tokenizer, made on first use
# parts joined by . / : - (paths, dotted names, flags), from the start of a word only and without backtracking
# (possessive): linear in the text's length (`\w+(?:[./:-]+\w+)+` took 3.5 s on a 20,000-letter word)
_JOINED = re.compile(r"\b\w++(?:[./:-]++\w++)+")
MAX_JOINED = 200  # longer runs (a blob, a minified line) are not made one term
_SEPARATORS = re.compile(r"[\W_]+")
_lock = threading.Lock()


def _model(tokenizer: Tokenizer) -> Any:
    import qdrant_edge as q

    kinds = {"code": q.TokenizerType.Code, "word": q.TokenizerType.Word}
    if tokenizer not in kinds:
        raise ValueError(f"unknown tokenizer {tokenizer!r}: expected one of {sorted(kinds)}")
    with _lock:
        model = _models.get(tokenizer)
        if model is None:
            model = q.Bm25(q.Bm25Config(tokenizer=kinds[tokenizer], language="english"))
            _models[tokenizer] = model
        return model


def _pack(vec: Any) -> SparseVec | None:
    indices, values = list(vec.indices), list(vec.values)
    if not indices:
        return None
    pairs = sorted(zip(indices, values, strict=True))  # one entry per index, in order
    merged: dict[int, float] = {}
    for i, v in pairs:
        merged[i] = merged.get(i, 0.0) + float(v)
    return list(merged), list(merged.values())


def _whole_identifiers(text: str) -> str:
    """`text` followed by a line with each identifier of it whose parts are joined by `.`, `/`, `:` or `-`
    written as one word (separators removed, lowercase): `retry.max_backoff_ms` -> `retrymaxbackoffms`.
    Exactly `text` when it has none."""
    whole = [_SEPARATORS.sub("", m.group(0)).lower() for m in _JOINED.finditer(text) if len(m.group(0)) <= MAX_JOINED]
    return text + "\n" + " ".join(whole) if whole else text


def encode_document(text: str, tokenizer: Tokenizer = DEFAULT_TOKENIZER) -> SparseVec | None:
    """The BM25 document vector of a memory's content (term-frequency weights), or None."""
    return _pack(_model(tokenizer).embed_document(_whole_identifiers(text)))


def encode_query(text: str, tokenizer: Tokenizer = DEFAULT_TOKENIZER) -> SparseVec | None:
    """The BM25 query vector (each distinct term weighs 1), or None when no term is indexable."""
    return _pack(_model(tokenizer).embed_query(_whole_identifiers(text)))
