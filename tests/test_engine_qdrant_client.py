"""The qdrant-client engine: the url (server) code path, run against qdrant-client's local mode.

There is no Qdrant server here: the engine gets an injected `QdrantClient(":memory:")` and takes the
same code path as with a url (not exclusive, payload indexes created). Untested: the HTTP/gRPC
transport, API-key auth, server-side index behaviour.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from clarity.config import load_settings
from clarity.engines import engine_is_exclusive, open_engine
from clarity.engines.base import iter_all
from clarity.engines.edge.engine import EdgeEngine
from clarity.engines.qdrant_client import QdrantClientEngine
from clarity.memory.service import MemoryService

from .test_engine_edge import DIM, FixedEmbedder, expected_order, make_points


def test_settings_choose_the_engine(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(home)
    assert s.engine.kind == "edge" and engine_is_exclusive(s) and isinstance(open_engine(s), EdgeEngine)
    monkeypatch.setenv("CLARITY_ENGINE", "qdrant")
    local = load_settings(home)
    eng = open_engine(local)
    assert engine_is_exclusive(local) and isinstance(eng, QdrantClientEngine) and eng.exclusive
    assert eng.path == local.qdrant_path
    monkeypatch.setenv("CLARITY_QDRANT_URL", "http://qdrant.example:6333")
    monkeypatch.setenv("CLARITY_QDRANT_API_KEY", "k")
    monkeypatch.setenv("CLARITY_QDRANT_COLLECTION", "team_memories")
    remote = load_settings(home)
    assert not engine_is_exclusive(remote)
    eng = open_engine(remote)
    assert isinstance(eng, QdrantClientEngine) and not eng.exclusive and not eng.is_open
    assert (eng.url, eng.api_key, eng.collection) == ("http://qdrant.example:6333", "k", "team_memories")
    monkeypatch.setenv("CLARITY_QDRANT_COLLECTION", "bad name/")
    with pytest.raises(Exception, match="CLARITY_QDRANT_COLLECTION"):
        load_settings(home)


def test_server_code_path_against_local_mode() -> None:
    e = QdrantClientEngine(client=QdrantClient(":memory:"), collection="team")
    assert not e.exclusive
    e.ensure_collection(DIM)
    pts = make_points(40)
    e.upsert(pts)
    assert e.count() == 40 and e.count({"tags": ["even"]}) == 20
    assert e.facet("memory_type") == {"note": 14, "fact": 13, "decision": 13}
    assert [p.id for off in range(0, 40, 6) for p in e.newest(None, off, 6)] == expected_order(pts)
    assert [p.id for p in e.find({"memory_type": "fact", "content_hash": "h4"})] == [pts[4].id]
    assert sorted(p.id for page in iter_all(e, 7) for p in page) == sorted(p.id for p in pts)
    assert pts[3].vector is not None and e.search(pts[3].vector, 1)[0].id == pts[3].id
    e.delete([pts[3].id])
    assert e.retrieve([pts[3].id]) == [] and e.count() == 39
    e.close()


def test_service_over_the_server_engine(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home")
    engine = QdrantClientEngine(client=QdrantClient(":memory:"))
    svc = MemoryService(settings, lambda: engine, FixedEmbedder())  # type: ignore[arg-type]
    first = svc.execute("store", {"id": str(uuid.uuid4()), "content": "shared team fact", "tags": ["t"]})
    dup = svc.execute("store", {"id": str(uuid.uuid4()), "content": "shared team fact"})
    assert dup["duplicate_of"] == first["id"]
    assert svc.execute("list", {"limit": 5})["total"] == 1
    assert svc.execute("stats", {})["by_type"] == {"note": 1}
    assert svc.execute("stats", {})["engine"] == "qdrant-server"
