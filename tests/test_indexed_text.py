"""What a memory is indexed by (`clarity.memory.indexed_text`): the texts, and every write path of the real
service (real Edge engine, real model) indexing them without storing them into the content; memories
embedded from their content alone (stores written before) are still found."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clarity.encoders.dense import Embedder
from clarity.encoders.sparse import encode_document
from clarity.engines.base import Point
from clarity.memory import indexed_text as it
from clarity.memory.model import content_hash, new_id
from clarity.memory.service import MemoryService


def cos(a: list[float] | None, b: list[float]) -> float:
    assert a is not None
    x, y = np.asarray(a), np.asarray(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def stored(svc: MemoryService, memory_id: str) -> Point:
    return svc._eng().retrieve([memory_id], with_vectors=True)[0]


PAYLOAD = {"content": "We retry the payment call three times.", "memory_type": "decision",
           "tags": ["payments", "retry"], "created_at": "2023-05-18T13:47:00.000000+00:00",
           "context": {"task": "gateway timeouts", "file": "billing/gateway.py", "n": 3, "nested": {"why": "flaky"}}}


def test_the_texts() -> None:
    assert it.date_text("2023-05-18T13:47:00+00:00") == "18 May 2023"
    assert it.date_text("not a date") == "" and it.date_text(None) == ""
    assert it.context_text(PAYLOAD["context"]) == "task: gateway timeouts\nfile: billing/gateway.py\nn: 3\nwhy: flaky"
    assert it.context_text({"long": "x" * 5000}) == ("long: " + "x" * 5000)[:it.MAX_EXTRA_CHARS]
    assert it.context_text("a string") == "" and it.context_text({}) == ""
    assert it.dense_text(PAYLOAD, it.Recipe(date=True, context=True)) == (
        "18 May 2023\nWe retry the payment call three times.\n" + it.context_text(PAYLOAD["context"]))
    assert it.sparse_text(PAYLOAD, it.Recipe(date=True, tags=True)) == (
        "18 May 2023 · payments retry\nWe retry the payment call three times.")
    assert it.indexed_text(PAYLOAD, it.Recipe(memory_type=True)).startswith("decision\n")
    # no extra field (or a recipe without any): exactly the content, so old and new memories compare alike
    bare = {"content": "only this"}
    assert it.dense_text(bare) == it.sparse_text(bare) == "only this"
    assert it.indexed_text(PAYLOAD, it.CONTENT_ONLY) == PAYLOAD["content"]
    # the recipes shipped: the context embedded, the date counted by BM25
    assert it.dense_text(PAYLOAD) == PAYLOAD["content"] + "\n" + it.context_text(PAYLOAD["context"])
    assert it.sparse_text(PAYLOAD) == "18 May 2023\n" + PAYLOAD["content"]


def test_a_store_indexes_the_recipe_and_keeps_the_content(svc: MemoryService, embedder: Embedder) -> None:
    mid = new_id()
    svc.execute("store", {"id": mid, "content": PAYLOAD["content"], "memory_type": "decision",
                          "tags": ["payments", "retry"], "context": PAYLOAD["context"]})
    got = svc.execute("get", {"memory_id": mid})
    assert got["content"] == PAYLOAD["content"] and got["context"] == PAYLOAD["context"]
    p = stored(svc, mid)
    assert p.payload["content"] == PAYLOAD["content"]
    # the dense vector embeds the content with its context, not the content alone
    assert it.dense_text(p.payload) == PAYLOAD["content"] + "\n" + it.context_text(PAYLOAD["context"])
    assert cos(p.vector, embedder.embed_one(it.dense_text(p.payload))) > 0.9999
    assert cos(p.vector, embedder.embed_one(PAYLOAD["content"])) < 0.99
    # the BM25 vector counts its date: the words of the date (only there) find it by keyword
    day = it.date_text(p.payload["created_at"])
    assert day and day.split()[1] not in PAYLOAD["content"]
    hits = svc.execute("retrieve", {"query": day, "mode": "keyword", "min_similarity": -1.0})
    assert [m["id"] for m in hits["memories"]] == [mid]


def test_the_context_helps_find_the_memory_by_meaning(svc: MemoryService) -> None:
    a, b = new_id(), new_id()
    svc.execute("store", {"id": a, "content": "We decided to retry three times before giving up.",
                          "context": {"task": "payment gateway timeouts at checkout"}})
    svc.execute("store", {"id": b, "content": "We decided to retry three times before we give up.",
                          "context": {"task": "flaky integration tests on the CI runners"}})
    first = svc.execute("retrieve", {"query": "checkout payment timeouts", "mode": "semantic",
                                     "min_similarity": -1.0})["memories"][0]
    assert first["id"] == a
    first = svc.execute("retrieve", {"query": "flaky CI tests", "mode": "semantic",
                                     "min_similarity": -1.0})["memories"][0]
    assert first["id"] == b


def test_memories_embedded_from_their_content_alone_are_still_found(svc: MemoryService,
                                                                     embedder: Embedder) -> None:
    """A store written before (dense and BM25 vectors of the content only) beside memories written now:
    each old memory is still the first answer to its question, with the similarity it had."""
    old = {"The deploy pipeline pushes images to the registry after the tests pass.": "how do images get published",
           "Postgres backups run nightly at two in the morning.": "when is the database backed up",
           "ERR_LEASE_EXPIRED means the owner lost its lease.": "ERR_LEASE_EXPIRED"}
    ids = {}
    svc.open_engine()
    points = []
    for content in old:
        mid = ids[content] = new_id()
        payload = {"content": content, "memory_type": "note", "importance": 0.5, "tags": [], "metadata": {},
                   "context": {"file": "notes.md"}, "created_at": "2024-01-02T03:04:05.000000+00:00",
                   "updated_at": "2024-01-02T03:04:05.000000+00:00", "content_hash": content_hash(content)}
        points.append(Point(id=mid, payload=payload, vector=embedder.embed_one(content),
                            sparse=encode_document(content)))
    svc._eng().upsert(points)
    for content in ("The deploy pipeline is triggered by merges to main.", "Nightly jobs run at two.",
                    "Leases are renewed every second by the owner."):
        svc.execute("store", {"id": new_id(), "content": content, "context": {"file": "notes.md"}})
    for content, query in old.items():
        hits = svc.execute("retrieve", {"query": query, "min_similarity": -1.0})["memories"]
        assert hits[0]["id"] == ids[content], (query, [h["content"] for h in hits])
        assert abs(hits[0]["similarity"] - cos(embedder.embed_one(query), embedder.embed_one(content))) < 1e-4


def test_update_reembeds_when_the_indexed_text_changes_only(svc: MemoryService, embedder: Embedder) -> None:
    mid = new_id()
    svc.execute("store", {"id": mid, "content": "The cache is warmed at start.", "context": {"task": "boot"}})
    before = stored(svc, mid).vector
    r = svc.execute("update", {"memory_id": mid, "updates": {"importance": 0.9}})
    assert not r["reembedded"] and stored(svc, mid).vector == before
    r = svc.execute("update", {"memory_id": mid, "updates": {"tags": ["boot"], "memory_type": "fact"}})
    assert not r["reembedded"] and stored(svc, mid).vector == before  # neither is embedded
    r = svc.execute("update", {"memory_id": mid, "updates": {"context": {"task": "failover of the owner"}}})
    after = stored(svc, mid)
    assert r["reembedded"] and after.vector != before
    assert after.payload["content"] == "The cache is warmed at start."
    assert cos(after.vector, embedder.embed_one(it.dense_text(after.payload))) > 0.9999
    r = svc.execute("update", {"memory_id": mid, "updates": {"content": "The cache is warmed lazily."}})
    after = stored(svc, mid)
    assert r["reembedded"] and cos(after.vector, embedder.embed_one(it.dense_text(after.payload))) > 0.9999
    # the BM25 vector is the new content's (with the date): the old words are gone, the new ones found
    for word, found in (("start", []), ("lazily", [mid])):
        hits = svc.execute("retrieve", {"query": word, "mode": "keyword", "min_similarity": -1.0})
        assert [m["id"] for m in hits["memories"]] == found


def test_import_indexes_like_a_store(svc: MemoryService, embedder: Embedder) -> None:
    mid, other = new_id(), new_id()
    item = {"id": mid, "content": "Quarterly invoices are reconciled by the ledger job.", "tags": ["billing"],
            "created_at": "2023-05-18T13:47:00.000000+00:00", "context": {"previous": "Who reconciles invoices?"}}
    later = {"id": other, "content": "Invoices are sent on the first day of the month.",
             "created_at": "2024-07-02T09:00:00.000000+00:00"}
    assert svc.execute("import", {"memories": [item, later]})["imported"] == 2
    p = stored(svc, mid)
    assert p.payload["content"] == item["content"] and p.payload["created_at"] == item["created_at"]
    assert cos(p.vector, embedder.embed_one(it.dense_text(p.payload))) > 0.9999
    assert "Who reconciles invoices?" in it.dense_text(p.payload)
    for query, want in (("May 2023", [mid]), ("July 2024", [other])):  # each found by its own date
        hits = svc.execute("retrieve", {"query": query, "mode": "keyword", "min_similarity": -1.0})
        assert [m["id"] for m in hits["memories"]] == want


def test_the_locomo_reader_and_evaluation(tmp_path: Path, svc: MemoryService) -> None:
    """tests/eval/locomo.py on a two-session conversation in LoCoMo's format: turns become memories dated by
    their session, with the previous turn as context; questions are scored by their evidence turns."""
    import json

    from tests.eval import locomo

    conv = {"speaker_a": "Ann", "speaker_b": "Bob",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a puppy named Biscuit."},
                          {"speaker": "Bob", "dia_id": "D1:2", "text": "What breed is it?",
                           "blip_caption": "a photo of a small dog"}],
            "session_2_date_time": "10:02 am on 20 June, 2023",
            "session_2": [{"speaker": "Bob", "dia_id": "D2:1", "text": "I started rock climbing at the gym."}]}
    qa = [{"question": "What is the name of Ann's dog?", "answer": "Biscuit", "evidence": ["D1:1"], "category": 4},
          {"question": "Which sport did Bob take up?", "answer": "climbing", "evidence": ["D2:1"], "category": 4},
          {"question": "Unanswerable", "answer": "", "evidence": [], "category": 5}]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([{"sample_id": "s1", "conversation": conv, "qa": qa}]))
    [c] = locomo.load(path)
    assert [m["content"] for m in c.memories] == [
        "Ann: I adopted a puppy named Biscuit.", "Bob: What breed is it? [shares a photo: a photo of a small dog]",
        "Bob: I started rock climbing at the gym."]
    assert c.memories[0]["created_at"].startswith("2023-05-08T13:56") and c.memories[2]["context"] == {}
    assert c.memories[1]["context"] == {"previous": "Ann: I adopted a puppy named Biscuit."}
    assert len(c.questions) == 2  # a question without evidence is not asked
    rows = locomo.evaluate(svc, c)
    assert rows == [(4, 1.0, 1.0), (4, 1.0, 1.0)]
    assert locomo.summarize(rows)["all"] == {"n": 2, "recall@5": 1.0, "hit@5": 1.0}
