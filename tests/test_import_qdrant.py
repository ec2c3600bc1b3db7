"""`clarity import --qdrant-path`: a store written by the real mcp-server-qdrant, and the mapping rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from clarity.engines.import_qdrant import ImportStats, to_memory

from .conftest import cli

FIXTURE = Path(__file__).parent / "fixtures" / "mcp_server_qdrant" / "store"
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
