"""The cosine floor of a hybrid search only cuts, never reorders; BM25 counts joined identifiers whole.

Real engines (Qdrant Edge and qdrant-client's local mode), the real model. The store is small enough
(35 memories of tests/eval) that every memory is in both branches' candidates, so what a floor keeps is
exactly: cosine >= floor, or a term shared with the query."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from clarity.config import load_settings
from clarity.encoders.sparse import _whole_identifiers, encode_document, encode_query
from clarity.engines.base import Point, SearchQuery
from clarity.memory.indexed_text import sparse_text
from clarity.memory.service import build_service
from tests.eval import evaluate as ev
from tests.eval.data import load_memories, load_questions

OFF_TOPIC = ["best recipe for sourdough bread starter", "how far is the moon from the earth",
             "photosynthesis in desert plants"]


def _keyword_match(query: str, p: Point) -> bool:
    q, d = encode_query(query), encode_document(sparse_text(p.payload))
    return q is not None and d is not None and bool(set(q[0]) & set(d[0]))


@pytest.mark.parametrize("engine", ["edge", "qdrant"])
def test_floor_cuts_without_reordering(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARITY_ENGINE", engine)
    svc = build_service(load_settings(tmp_path / "home"))
    try:
        ev.load_into(svc, load_memories()[:35])
        queries = [q.query for q in load_questions()[::6]] + OFF_TOPIC
        checked = cut = 0
        for text in queries:
            dense, sparse = svc.embedder.embed_one(text), encode_query(text)
            if sparse is None:
                continue
            everything = svc._eng().query(SearchQuery(dense=dense, sparse=sparse, limit=10, min_similarity=-1.0))
            for floor in (0.25, 0.4):
                cos = {p.id: p.extra["cosine"] for p in everything}
                if any(abs(c - floor) < 1e-4 for c in cos.values()):
                    continue  # float32 in the engine, float64 here: too close to call
                kept = [p for p in everything if cos[p.id] >= floor or _keyword_match(text, p)]
                got = svc._eng().query(SearchQuery(dense=dense, sparse=sparse, limit=10, min_similarity=floor))
                assert all(p.extra["cosine"] >= floor or _keyword_match(text, p) for p in got), text
                assert [p.id for p in got[:len(kept)]] == [p.id for p in kept], (text, floor)
                assert [p.score for p in got[:len(kept)]] == pytest.approx([p.score for p in kept], rel=1e-6)
                checked += 1
                cut += len(everything) - len(kept)
        assert checked > 100 and cut > 0
    finally:
        svc.close()


def test_joined_identifiers_are_also_one_term(tmp_path: Path) -> None:
    assert _whole_identifiers("plain words, nothing joined") == "plain words, nothing joined"
    assert _whole_identifiers("see services/api/auth.py and --dry-run") == \
        "see services/api/auth.py and --dry-run\nservicesapiauthpy dryrun"
    parts, whole = encode_query("services api auth py"), encode_query("services/api/auth.py")
    assert parts is not None and whole is not None and set(parts[0]) < set(whole[0])
    assert len(whole[0]) == len(parts[0]) + 1

    svc = build_service(load_settings(tmp_path / "home"))
    try:
        named = svc.execute("store", {"id": str(uuid.uuid4()), "content": "After a leak run rotate-api-key"})["id"]
        for text in ("We rotate the API key and the signing key every month: the key rotation job",
                     "The public API key is shown once; rotate it from the settings page"):
            svc.execute("store", {"id": str(uuid.uuid4()), "content": text})
        for mode in ("keyword", "hybrid"):
            r = svc.execute("retrieve", {"query": "rotate-api-key", "mode": mode})
            assert r["memories"][0]["id"] == named, mode
    finally:
        svc.close()


def test_joined_identifiers_take_time_linear_in_the_text() -> None:
    """The pattern runs from word starts without backtracking: a 32 KB word (a blob, a hash run) costs
    microseconds (the backtracking pattern it replaced took seconds, growing with the square of the size),
    and a run longer than MAX_JOINED is not made one term."""
    import time

    from clarity.encoders.sparse import MAX_JOINED

    t0 = time.perf_counter()
    assert _whole_identifiers("x" * 32_000) == "x" * 32_000
    assert _whole_identifiers("a." * 5_000) == "a." * 5_000
    assert time.perf_counter() - t0 < 1.0
    long_run = ".".join(["part"] * (MAX_JOINED // 4))
    assert _whole_identifiers(f"{long_run} and a.b") == f"{long_run} and a.b\nab"
