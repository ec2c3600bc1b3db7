"""The retrieval evaluation set (tests/eval) is consistent, and the evaluator runs on a subset.

The evaluator test runs the real service (real engine, real embedding model) in-process on a subset:
every 6th question, its answers and every 4th other memory as distractors, all 60 pairs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.eval.bm25 import BM25, tokenize
from tests.eval.data import CATEGORIES, load_memories, load_pairs, load_questions, uuid_for, validate
from tests.eval.runner import run_evaluation

MEMORIES, QUESTIONS, PAIRS = load_memories(), load_questions(), load_pairs()


def test_data_set_is_consistent_and_large_enough() -> None:
    assert validate(MEMORIES, QUESTIONS, PAIRS) == []
    assert 250 <= len(MEMORIES) <= 400
    per_cat = {c: sum(q.category == c for q in QUESTIONS) for c in CATEGORIES}
    assert per_cat["paraphrase"] >= 150 and per_cat["identifier"] >= 100 and per_cat["keyword"] >= 45
    kinds = [p.kind for p in PAIRS]
    assert kinds.count("near_duplicate") == 30 and kinds.count("related") == 30
    assert sum(len(m.content) > 1000 for m in MEMORIES) >= 5  # some long memories
    assert len({uuid_for(m.id) for m in MEMORIES}) == len(MEMORIES)


def test_validate_reports_each_kind_of_error() -> None:
    mems = list(MEMORIES)
    qs = list(QUESTIONS)
    ident = next(q for q in qs if q.category == "identifier" and len(q.answers) == 1)
    # the identifier also appears in a second memory that is not listed as an answer
    other = next(m for m in mems if m.id not in ident.answers)
    mems[mems.index(other)] = dataclasses.replace(other, content=other.content + " " + ident.query)
    qs.append(dataclasses.replace(qs[0], answers=["no-such-memory"]))  # unknown answer + duplicate id
    mems.append(mems[0])  # duplicate memory id
    problems = validate(mems, qs, PAIRS)
    assert any(ident.query in p and other.id in p for p in problems), problems
    assert any("no-such-memory" in p for p in problems)
    assert any(p.startswith("duplicate question id") for p in problems)
    assert any(p.startswith("duplicate memory id") for p in problems)


def test_tokenizer_keeps_identifiers_whole_and_split() -> None:
    toks = tokenize("Set retry.max_backoff_ms in services/api/handlers/auth.py, see ERR_LEASE_EXPIRED.")
    for t in ("retry.max_backoff_ms", "retry", "max", "backoff", "ms", "services/api/handlers/auth.py",
              "auth", "py", "err_lease_expired", "lease", "expired"):
        assert t in toks
    index = BM25([("a", "retry.max_backoff_ms caps the delay"), ("b", "retry.base_backoff_ms is the first delay")])
    assert index.search("retry.base_backoff_ms", 2)[0] == "b"


def _subset() -> tuple[list, list]:
    questions = QUESTIONS[::6]
    needed = {a for q in questions for a in q.answers}
    memories = [m for i, m in enumerate(MEMORIES) if m.id in needed or i % 4 == 0]
    return memories, questions


@pytest.mark.timeout(600)
def test_evaluator_on_a_subset(tmp_path: Path) -> None:
    memories, questions = _subset()
    report = run_evaluation(tmp_path / "home", memories, questions, PAIRS)
    assert report["memories"] == len(memories)
    assert set(report["methods"]) >= {"bm25"}
    dense = [k for k in report["methods"] if k.startswith("clarity:")]
    assert dense, report["methods"].keys()
    for figures in report["methods"].values():
        assert set(figures) == {*CATEGORIES, "all"}
        for f in figures.values():
            assert f["n"] > 0
            for key in ("hit@1", "hit@5", "recall@5", "mrr@5"):
                assert 0.0 <= f[key] <= 1.0
            assert f["hit@1"] <= f["hit@5"]
    assert len(report["per_question"]) == len(questions)
    nd = report["near_duplicates"]
    assert nd["near_duplicate"]["n"] == 30 and nd["related"]["n"] == 30
    # Behaviour, floors with slack under what was measured on this subset (117 memories, 72 questions):
    # dense paraphrase recall@5 1.00 (0.86 on the full set), BM25 identifier hit@1 1.00, near-duplicate
    # cosine median 0.915 vs related 0.425.
    semantic = report["methods"].get("clarity:semantic") or report["methods"][dense[0]]
    assert semantic["paraphrase"]["recall@5"] >= 0.85
    assert report["methods"]["bm25"]["identifier"]["hit@1"] >= 0.9
    assert nd["near_duplicate"]["median"] > nd["related"]["median"] + 0.2
