"""MemoryService over the real Qdrant Edge engine and the real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clarity.config import load_settings
from clarity.coordination.coordinator import WRITES
from clarity.encoders.dense import Embedder
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.errors import InvalidArgument, NotFound
from clarity.memory import model as m
from clarity.memory.arguments import parse
from clarity.memory.model import new_id
from clarity.memory.service import OPERATIONS, MemoryService


def store(svc: MemoryService, content: str, **kw: Any) -> dict[str, Any]:
    return svc.execute("store", {"id": new_id(), "content": content, **kw})


def test_store_get_and_payload(svc: MemoryService) -> None:
    r = store(svc, "The CI runs on every push", memory_type="fact", importance=0.9, tags=["ci"],
              metadata={"source": "README"}, context={"file": "ci.yml"}, session="s1")
    assert r["stored"] and r["duplicate_of"] is None
    got = svc.execute("get", {"memory_id": r["id"]})
    assert got["content"] == "The CI runs on every push"
    assert got["memory_type"] == "fact" and got["importance"] == 0.9 and got["tags"] == ["ci"]
    assert got["metadata"] == {"source": "README"} and got["context"] == {"file": "ci.yml"}
    assert got["session"] == "s1" and len(got["content_hash"]) == 64
    assert got["created_at"].endswith("+00:00") and got["created_at"] == got["updated_at"]


def test_dedup_and_idempotent_retry(svc: MemoryService) -> None:
    mid = new_id()
    first = svc.execute("store", {"id": mid, "content": "same text"})
    retry = svc.execute("store", {"id": mid, "content": "same text"})
    assert retry["stored"] and retry["id"] == mid  # a retry after a lost answer is not a duplicate
    dup = store(svc, "same text")
    assert dup == {**dup, "stored": False, "duplicate_of": first["id"], "id": first["id"]}
    other_type = store(svc, "same text", memory_type="decision")
    assert other_type["stored"] and other_type["id"] != mid
    assert svc.execute("stats", {})["total"] == 2
    with pytest.raises(InvalidArgument, match="already used"):
        svc.execute("store", {"id": mid, "content": "different text"})


def test_dedup_index_survives_reopen(svc: MemoryService) -> None:
    first = store(svc, "persisted once")
    svc.close()
    assert store(svc, "persisted once")["duplicate_of"] == first["id"]


def test_retrieve_by_meaning_with_filters(svc: MemoryService) -> None:
    pg = store(svc, "We use PostgreSQL with pgbouncer for connection pooling", memory_type="decision",
               tags=["db"])
    store(svc, "Makefiles must be indented with tabs", tags=["build"])
    res = svc.execute("retrieve", {"query": "what database and connection pool do we use"})
    assert [m["id"] for m in res["memories"]] == [pg["id"]]
    assert res["memories"][0]["similarity"] > res["min_similarity"]
    assert "metadata" not in res["memories"][0]
    assert svc.execute("retrieve", {"query": "database", "types": ["note"]})["count"] == 0
    assert svc.execute("retrieve", {"query": "database", "tags": ["build"]})["count"] == 0
    with_meta = svc.execute("retrieve", {"query": "database pooling", "include_metadata": True})
    assert with_meta["memories"][0]["metadata"] == {}
    everything = svc.execute("retrieve", {"query": "banana bread recipe", "min_similarity": -1, "limit": 10})
    assert everything["count"] == 2


def test_list_newest_first_with_paging(svc: MemoryService) -> None:
    ids = [store(svc, f"memory {i}", tags=["even" if i % 2 == 0 else "odd"])["id"] for i in range(5)]
    page = svc.execute("list", {"limit": 2})
    assert page["total"] == 5 and [m["id"] for m in page["memories"]] == ids[::-1][:2]
    assert "content" not in page["memories"][0]
    page2 = svc.execute("list", {"limit": 2, "offset": 2, "include_content": True})
    assert [m["content"] for m in page2["memories"]] == ["memory 2", "memory 1"]
    assert svc.execute("list", {"tags": ["even"]})["total"] == 3


def test_update_reembeds_only_on_content_change(svc: MemoryService) -> None:
    r = store(svc, "The service is written in Go")
    up = svc.execute("update", {"memory_id": r["id"], "updates": {"importance": 1.0, "tags": ["lang"]}})
    assert up["updated_fields"] == ["importance", "tags"] and not up["reembedded"]
    old_hash = svc.execute("get", {"memory_id": r["id"]})["content_hash"]
    up = svc.execute("update", {"memory_id": r["id"], "updates": {"content": "The service is written in Rust"}})
    got = svc.execute("get", {"memory_id": r["id"]})
    assert up["reembedded"] and got["content_hash"] != old_hash and up["updated_at"] == got["updated_at"]
    hit = svc.execute("retrieve", {"query": "which programming language: rust", "limit": 1})["memories"][0]
    assert hit["id"] == r["id"] and hit["content"] == "The service is written in Rust"
    assert hit["importance"] == 1.0
    # the old text is free again, the new text is now a duplicate
    assert store(svc, "The service is written in Go")["stored"]
    assert store(svc, "The service is written in Rust")["duplicate_of"] == r["id"]


def test_delete(svc: MemoryService) -> None:
    a, b = store(svc, "first")["id"], store(svc, "second")["id"]
    missing = new_id()
    res = svc.execute("delete", {"memory_ids": [a, missing]})
    assert res == {"deleted": [a], "not_found": [missing]}
    with pytest.raises(NotFound):
        svc.execute("get", {"memory_id": a})
    assert svc.execute("stats", {})["total"] == 1
    assert store(svc, "first")["stored"]  # dedup forgot the deleted one
    assert svc.execute("get", {"memory_id": b})["content"] == "second"


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("store", {"content": ""}, "content must not be empty"),
    ("store", {"content": "   "}, "content must not be empty"),
    ("store", {"content": "x", "importance": 3}, "importance"),
    ("store", {"content": "x", "importance": "high"}, "importance"),
    ("store", {"content": "x" * (10 * 1024 * 1024)}, "limit is 32768 bytes"),
    ("store", {"content": 5}, "content"),
    ("store", {"content": "x", "memory_type": "Not A Slug"}, "memory_type"),
    ("store", {"content": "x", "tags": "notalist"}, "tags"),
    ("store", {"content": "x", "metadata": [1]}, "metadata"),
    ("store", {"content": "x", "surprise": 1}, "surprise"),
    ("store", {"content": "x", "id": "not-a-uuid"}, "not a memory id"),
    ("retrieve", {"query": ""}, "query"),
    ("retrieve", {"query": "x", "limit": 0}, "limit"),
    ("list", {"limit": -1}, "limit"),
    ("get", {"memory_id": "nope"}, "not a memory id"),
    ("update", {"memory_id": new_id(), "updates": {"importance": 0.1}}, "no memory with id"),
    ("update", {"memory_id": new_id(), "updates": {}}, "at least one"),
    ("update", {"memory_id": new_id(), "updates": {"colour": "red"}}, "colour"),
    ("delete", {"memory_ids": []}, "memory_ids"),
    ("stats", {"verbose": True}, "verbose"),
    ("backup", {"to": "/tmp"}, "to: not an argument of backup (it takes none)"),
    ("explode", {}, "unknown operation"),
]


@pytest.mark.parametrize(("op", "args", "needle"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_refused_and_changes_nothing(svc: MemoryService, op: str, args: dict[str, Any],
                                                  needle: str) -> None:
    keep = store(svc, "an existing memory")
    before = svc.execute("export", {})
    if op == "store" and "id" not in args:
        args = {"id": new_id(), **args}
    with pytest.raises((InvalidArgument, NotFound)) as e:
        svc.execute(op, args)
    assert needle in str(e.value)
    assert svc.execute("export", {}) == before
    assert svc.execute("get", {"memory_id": keep["id"]})["content"] == "an existing memory"


def test_update_refuses_oversized_content_and_keeps_old(svc: MemoryService) -> None:
    r = store(svc, "short")
    with pytest.raises(InvalidArgument, match="limit"):
        svc.execute("update", {"memory_id": r["id"], "updates": {"content": "y" * 40000}})
    assert svc.execute("get", {"memory_id": r["id"]})["content"] == "short"


def test_export_import_roundtrip(svc: MemoryService, tmp_path: Path, embedder: Embedder) -> None:
    for i in range(3):
        store(svc, f"exported memory {i}", tags=["x"])
    dump = svc.execute("export", {})
    s2 = load_settings(tmp_path / "other")
    other = MemoryService(s2, lambda: EdgeEngine(edge_dir(s2.qdrant_path)), embedder)
    try:
        assert other.execute("import", {"memories": dump["memories"]}) == {"imported": 3, "skipped": 0}
        assert other.execute("import", {"memories": dump["memories"]}) == {"imported": 0, "skipped": 3}
        again = other.execute("export", {})["memories"]
        # every value comes back; the origin says how the copies entered the other store, and what they were
        assert [{**x, "origin": "tool"} for x in again] == [{**x, "origin_detail": "was tool"}
                                                             for x in dump["memories"]]
        assert {x["origin"] for x in again} == {"import"}
    finally:
        other.close()


def test_operations_are_one_typed_table() -> None:
    assert MemoryService.OPS == tuple(OPERATIONS) == (
        "store", "retrieve", "list", "get", "update", "delete", "review", "stats", "export", "import", "backup")
    assert {op for op, o in OPERATIONS.items() if o.writes} == set(WRITES)  # the coordinator's retry hint
    assert all(issubclass(o.request, m.Request) for o in OPERATIONS.values())


def test_a_parsed_request_answers_as_its_json(svc: MemoryService) -> None:
    r = store(svc, "parsed or not, the same answer", tags=["p"])
    for op, args in (("get", {"memory_id": r["id"]}), ("list", {"tags": ["p"], "include_content": True}),
                     ("retrieve", {"query": "the same answer", "include_metadata": True})):
        req = parse(OPERATIONS[op].request, args)
        assert svc.execute(op, req) == svc.execute(op, args), op
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        svc.execute("get", [r["id"]])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="unknown operation"):
        svc.execute(["get"], {})  # type: ignore[arg-type]
