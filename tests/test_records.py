"""clarity.memory.records: payloads and results built in one place, and the JSON the service sends
(keys, omissions, rounding and key order as they have always been); plus the shape of the package
(no import cycle, no module reaching into another's private members)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest

from clarity.engines.base import Point
from clarity.memory import model as m
from clarity.memory import records
from clarity.memory.arguments import parse

ID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
OTHER = "0a1b2c3d-4a5b-4c6d-8e9f-6f1c2d3e4a5b"
TS = "2026-01-02T03:04:05.000006+00:00"
PACKAGE = Path(__file__).resolve().parents[1] / "clarity" / "memory"


def payload(**kw: Any) -> dict[str, Any]:
    return {"content": "the text", "memory_type": "fact", "importance": 0.7, "tags": ["a"],
            "metadata": {"m": 1}, "context": {"c": [1.5]}, "created_at": TS, "updated_at": TS,
            "content_hash": "h" * 64, "session": "s1", **kw}


def test_memory_view_keys_in_the_order_the_service_has_always_sent() -> None:
    p = Point(id=ID, payload=payload(supersedes=OTHER, superseded_by=""), score=0.5, extra={"cosine": 0.12345678})
    assert list(records.dump(records.memory(p))) == [
        "id", "memory_type", "importance", "tags", "created_at", "updated_at", "content_hash", "session", "origin",
        "content", "metadata", "context", "supersedes", "similarity"]
    got = records.dump(records.memory(p))
    assert got["similarity"] == 0.123457 and got["supersedes"] == OTHER and "superseded_by" not in got
    assert got["content"] == "the text" and got["metadata"] == {"m": 1} and got["importance"] == 0.7


def test_memory_view_leaves_out_what_was_not_asked_for_or_is_not_set() -> None:
    bare = Point(id=ID, payload={"content": "x"})
    got = records.dump(records.memory(bare, content=False, meta=False))
    assert got == {"id": ID, "memory_type": "note", "importance": 0.5, "tags": [], "created_at": "",
                   "updated_at": "", "content_hash": "", "session": "", "origin": ""}
    with_meta = records.dump(records.memory(bare))
    assert with_meta["content"] == "x" and with_meta["metadata"] == {} and with_meta["context"] == {}
    # similarity: the cosine where the engine gives one, else the score, else none
    assert records.dump(records.memory(Point(id=ID, payload={}, score=0.25)))["similarity"] == 0.25
    assert "similarity" not in records.dump(records.memory(Point(id=ID, payload={}, score=0.25,
                                                                 extra={"cosine": None})))


def test_store_answers() -> None:
    new = Point(id=ID, payload=payload())
    near = [Point(id=OTHER, payload={}, score=0.9, extra={"cosine": 0.912345678}),
            Point(id=ID, payload={}, score=0.88)]
    assert records.dump(records.stored(new, near)) == {
        "id": ID, "stored": True, "duplicate_of": None, "created_at": TS,
        "similar_to": [{"id": OTHER, "similarity": 0.912346}, {"id": ID, "similarity": 0.88}]}
    assert records.dump(records.existing(new)) == {"id": ID, "stored": True, "duplicate_of": None,
                                                   "created_at": TS, "similar_to": []}
    assert list(records.dump(records.duplicate(new)).items()) == [
        ("id", ID), ("stored", False), ("duplicate_of", ID), ("created_at", TS), ("similar_to", [])]


def test_stats_keys_in_the_order_the_service_has_always_sent(tmp_path: Path) -> None:
    got = records.dump(records.stats(total=3, by_type={"note": 2, "fact": 1}, engine="e", model="mo", dims=4,
                                     storage_bytes=10, home=tmp_path, index_state={"written_since_build": 2}))
    assert list(got) == ["total", "by_type", "engine", "model", "dims", "storage_bytes", "home", "unindexed",
                         "index_building", "served_by_pid"]
    assert list(got["by_type"]) == ["fact", "note"] and got["unindexed"] == 2 and got["index_building"] is False
    assert got["home"] == str(tmp_path)


def test_other_results() -> None:
    req = parse(m.ListRequest, {"limit": 2, "offset": 1})
    listed = records.dump(records.listed(req, 5, [Point(id=ID, payload=payload())]))
    assert list(listed) == ["total", "offset", "limit", "memories"] and "content" not in listed["memories"][0]
    rreq = parse(m.RetrieveRequest, {"query": "q", "include_metadata": True})
    hit = Point(id=ID, payload=payload(), score=0.3, extra={"cosine": 0.3})
    assert records.dump(records.retrieved(rreq, 0.25, [hit])) == {
        "query": "q", "mode": "hybrid", "min_similarity": 0.25, "count": 1,
        "memories": [records.dump(records.memory(hit))]}
    assert records.dump(records.updated(ID, {"tags": 1, "content": 2}, True, TS)) == {
        "id": ID, "updated_fields": ["content", "tags"], "reembedded": True, "updated_at": TS}
    assert records.dump(records.deleted([ID, OTHER], {OTHER})) == {"deleted": [OTHER], "not_found": [ID]}
    assert records.dump(records.imported(2, 1)) == {"imported": 2, "skipped": 1}


def test_export_is_oldest_first_and_passes_the_payloads_through() -> None:
    old = Point(id=OTHER, payload=payload(created_at="2025-01-01T00:00:00.000000+00:00"), vector=[0.5])
    new = Point(id=ID, payload=payload(), vector=[0.25])
    plain = records.dump(records.exported("mo", [new, old], with_vectors=False))
    assert plain["model"] == "mo" and plain["count"] == 2
    assert [x["id"] for x in plain["memories"]] == [OTHER, ID] and "vector" not in plain["memories"][0]
    assert plain["memories"][1] == {"id": ID, **payload()}
    with_vectors = records.dump(records.exported("mo", [new, old], with_vectors=True))
    assert [x["vector"] for x in with_vectors["memories"]] == [[0.5], [0.25]]


def test_payloads_leave_their_inputs_as_they_were() -> None:
    req = parse(m.StoreRequest, {"id": ID, "content": "c", "tags": ["t"]})
    assert records.new_payload(req, "h", TS) == {
        "content": "c", "memory_type": "note", "importance": 0.5, "tags": ["t"], "metadata": {}, "context": {},
        "created_at": TS, "updated_at": TS, "content_hash": "h", "session": "", "origin": "tool"}
    assert list(records.new_payload(req, "h", TS, OTHER))[-1] == "supersedes"
    p = Point(id=ID, payload=payload(), vector=[1.0])
    before = copy.deepcopy(p)
    old = records.superseded(p, OTHER)
    assert old.payload["superseded_by"] == OTHER and old.vector == [1.0] and p == before
    up = records.updated_payload(p.payload, {"importance": 0.1}, "later", None)
    assert up == {**payload(), "importance": 0.1, "updated_at": "later"} and p == before


@pytest.mark.parametrize(("item", "created", "updated"), [
    ({"created_at": TS}, TS, TS),
    ({"created_at": TS, "updated_at": "2026-02-01T00:00:00+00:00"}, TS, "2026-02-01T00:00:00+00:00"),
    ({"created_at": "2026-01-01T00:00:00"}, None, None),  # no time zone: now
    ({"created_at": 5, "updated_at": "yesterday"}, None, None),
])
def test_imported_payload_keeps_valid_timestamps(item: dict[str, Any], created: str | None,
                                                 updated: str | None) -> None:
    req = parse(m.StoreRequest, {"id": ID, "content": "c"})
    got = records.imported_payload({"id": ID, "content": "c", "superseded_by": OTHER, "supersedes": "",
                                    **item}, req)
    assert got["superseded_by"] == OTHER and "supersedes" not in got
    assert got["content_hash"] == m.content_hash("c")
    if created is not None:
        assert (got["created_at"], got["updated_at"]) == (created, updated)
    else:
        assert got["created_at"] != item["created_at"] and got["created_at"].endswith("+00:00")


def _memory_imports(path: Path) -> set[str]:
    """The clarity.memory modules `path` imports (at any depth of its code)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "clarity.memory":
                out |= {a.name for a in node.names}
            elif node.module.startswith("clarity.memory."):
                out.add(node.module.removeprefix("clarity.memory."))
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("clarity.memory.") for a in node.names
                    if a.name.startswith("clarity.memory.")}
    return out


def test_no_import_cycle_and_no_private_reach_in_the_memory_package() -> None:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {name: _memory_imports(path) & set(modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for dep in graph[name]:
                visit(dep, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                assert isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"), \
                    f"{name}.py:{node.lineno} reaches into {ast.unparse(node)}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clarity"):
                assert not any(a.name.startswith("_") for a in node.names), f"{name}.py:{node.lineno}"
