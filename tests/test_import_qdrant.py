"""`clarity import --qdrant-path`: a store written by the real mcp-server-qdrant, and the mapping rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from clarity.memory.import_qdrant import ImportStats, to_memory

from .conftest import cli

FIXTURE = Path(__file__).parent / "fixtures" / "mcp_server_qdrant" / "store"


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


DEEP = _nested(40)  # deeper than a store takes (clarity.values.MAX_DEPTH)
TEXTS = {
    "Our CI runs on GitHub Actions; the release job needs the PYPI_TOKEN secret.": {"topic": "ci"},
    "Use ruff and mypy before every commit; the pre-commit hook runs both.": {"topic": "style", "tags": ["lint"]},
    "The staging database is PostgreSQL 16 on port 5433.": {},
    "Decision: keep the memory store embedded (Qdrant Edge), no daemon.": {"kind": "decision"},
}


def test_import_mcp_server_qdrant_store(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "mcp-store"
    shutil.copytree(FIXTURE, src)
    res = orjson.loads(cli(home, "import", "--qdrant-path", str(src), "--json").stdout)
    assert res == {"read": 4, "imported": 4, "already_present": 0, "skipped": {}}
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert {m["content"]: m["metadata"] for m in listed["memories"]} == TEXTS
    assert all(m["context"] == {"source": "mcp-store#mcp-memories"} for m in listed["memories"])
    hits = orjson.loads(cli(home, "search", "which database does staging use", "--json").stdout)
    assert hits["memories"][0]["content"] == "The staging database is PostgreSQL 16 on port 5433."
    again = orjson.loads(cli(home, "import", "--qdrant-path", str(src), "--json").stdout)
    assert again["imported"] == 0 and again["already_present"] == 4
    wrong = cli(home, "import", "--qdrant-path", str(src), "--collection", "nope", check=False)
    assert wrong.returncode == 2 and "no collection 'nope'" in wrong.stderr
    not_store = cli(home, "import", "--qdrant-path", str(tmp_path), check=False)
    assert not_store.returncode == 2 and "not a qdrant-client local store" in not_store.stderr


def test_mapping_rules() -> None:
    st = ImportStats()
    generic = to_memory({"text": "hello", "lang": "en"}, 7, "c", "s", 100, st)
    assert generic is not None and generic["content"] == "hello" and generic["metadata"] == {"lang": "en"}
    assert generic["id"] == to_memory({"text": "x"}, 7, "c", "s", 100, st)["id"]  # type: ignore[index]
    own = to_memory({"content": "mine", "memory_type": "fact", "tags": ["a"],
                     "created_at": "2025-01-01T00:00:00+00:00"},
                    "6f1c2a52-3b7e-4c1d-9a7e-0c1d2e3f4a5b", "c", "s", 100, st)
    assert own is not None and own["memory_type"] == "fact" and own["created_at"].startswith("2025")
    assert to_memory({"vector_only": 1}, 1, "c", "s", 100, st) is None
    assert to_memory({"document": "x" * 101}, 2, "c", "s", 100, st) is None
    assert to_memory({"document": "  "}, 3, "c", "s", 100, st) is None
    assert st.skipped == {"no text field": 1, "text longer than memory.max_content_bytes": 1, "empty text": 1}


def test_invalid_points_are_skipped_counted_and_named() -> None:
    st = ImportStats()
    base = {"content": "a memory", "memory_type": "note", "created_at": "2025-01-01T00:00:00+00:00"}
    assert to_memory({**base, "memory_type": "Bad Type"}, 1, "c", "s", 1000, st) is None
    assert to_memory({**base, "importance": "high"}, 2, "c", "s", 1000, st) is None
    assert to_memory({**base, "tags": "x"}, 3, "c", "s", 1000, st) is None
    assert to_memory({**base, "created_at": "garbage"}, 4, "c", "s", 1000, st) is None
    assert to_memory({**base, "updated_at": "2025-01-01T00:00:00"}, 5, "c", "s", 1000, st) is None
    assert to_memory({"document": "x", "metadata": {"deep": DEEP}},
                     6, "c", "s", 1000, st) is None
    assert to_memory({"text": "bad \x00 text"}, 7, "c", "s", 1000, st) is None
    assert to_memory(base, 8, "c", "s", 1000, st) is not None
    assert st.skipped == {"invalid memory_type": 1, "invalid importance": 1, "invalid tags": 1,
                          "invalid created_at": 1, "invalid updated_at": 1, "invalid metadata": 1,
                          "invalid content": 1}
    assert len(st.examples) == 5  # the first few, each naming its point and why
    assert st.examples[0].startswith("point 1 of c: memory_type: ") and "Bad Type" in st.examples[0]
    assert st.examples[3].startswith("point 4 of c: created_at: ")


def _clarity_store(path: Path, n: int, bad: dict[int, dict[str, object]]) -> dict[int, str]:
    """A qdrant-client store of `n` memories in Clarity's own payload, `bad` overriding some fields; the ids."""
    import random
    import uuid

    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    rng = random.Random(5)
    ids = {i: str(uuid.UUID(int=rng.getrandbits(128), version=4)) for i in range(n)}
    client = QdrantClient(path=str(path))
    client.create_collection("memories", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    pts = [qm.PointStruct(id=ids[i], vector=[1.0, 0.5, 0.25, float(i)],
                          payload={"content": f"imported memory number {i}", "memory_type": "note",
                                   "importance": 0.5, "tags": ["old"], "created_at": "2025-02-01T10:00:00+00:00",
                                   "updated_at": "2025-02-01T10:00:00+00:00", **bad.get(i, {})})
           for i in range(n)]
    for start in range(0, n, 200):
        client.upsert("memories", pts[start:start + 200])
    client.close()
    return ids


def test_one_bad_point_among_599_is_skipped_not_fatal(home: Path, tmp_path: Path) -> None:
    bad = {300: {"memory_type": "Bad Type"}, 450: {"importance": "high"}, 520: {"created_at": "garbage"}}
    ids = _clarity_store(tmp_path / "store", 599, bad)
    proc = cli(home, "import", "--qdrant-path", str(tmp_path / "store"), "--json", check=False)
    assert proc.returncode == 0, proc.stderr
    res = orjson.loads(proc.stdout)
    assert res == {"read": 599, "imported": 596, "already_present": 0,
                   "skipped": {"invalid memory_type": 1, "invalid importance": 1, "invalid created_at": 1}}
    for i in bad:
        assert ids[i] in proc.stderr, proc.stderr  # each skipped point named, with why
    assert "Bad Type" in proc.stderr and "Traceback" not in proc.stderr
    again = orjson.loads(cli(home, "import", "--qdrant-path", str(tmp_path / "store"), "--json").stdout)
    assert again["imported"] == 0 and again["already_present"] == 596 and again["skipped"] == res["skipped"]
    assert orjson.loads(cli(home, "list", "--json", "--limit", "1").stdout)["total"] == 596
