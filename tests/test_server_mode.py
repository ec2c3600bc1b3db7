"""Server mode's engine against a Qdrant server process: the stand-in (tests/harness/qdrant_standin), or
the real server CI names in QDRANT_SERVER_URL. Set-up that converges (six sessions at once, a collection
made without indexes, a wrong vector size), the API key, failures within the call's deadline (a stopped
server, a slow one: stand-in only), and what status says."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from clarity.engines.base import Point
from clarity.engines.qdrant_client import INDEXES, QdrantClientEngine
from clarity.engines.server_calls import call_deadline
from clarity.engines.server_info import derived_collection, insecure_key, redact
from clarity.errors import ConfigError, ServerOutcomeUnknown, ServerRefused, ServerUnavailable
from tests.harness.qdrant_standin import server

DIM = 4
KEY = "test-key-7f3a"


def _point(content: str, ts: str = "2026-01-01T00:00:00.000001+00:00") -> Point:
    return Point(id=str(uuid.uuid4()), vector=[1.0, 0.0, 0.0, 0.0],
                 payload={"content": content, "memory_type": "note", "tags": ["t"], "created_at": ts,
                          "updated_at": ts, "content_hash": uuid.uuid4().hex})


def test_six_sessions_set_up_one_new_collection_at_once(tmp_path: Path) -> None:
    with server(tmp_path / "q", api_key=KEY, strict=True) as (url, key, _s):
        name = f"six_{uuid.uuid4().hex[:8]}"
        engines = [QdrantClientEngine(url=url, api_key=key, collection=name) for _ in range(6)]
        errors: list[BaseException] = []

        def go(e: QdrantClientEngine) -> None:
            try:
                e.ensure_collection(DIM)
            except BaseException as x:  # noqa: BLE001 - collected and asserted below
                errors.append(x)

        threads = [threading.Thread(target=go, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        raw = QdrantClient(url=url, api_key=key, check_compatibility=False)
        assert {k for k, _t in INDEXES} <= set(raw.get_collection(name).payload_schema)


def test_a_collection_made_without_indexes_serves_list_stats_and_default_filters(tmp_path: Path) -> None:
    with server(tmp_path / "q", api_key=KEY, strict=True) as (url, key, _s):
        name = f"bare_{uuid.uuid4().hex[:8]}"
        raw = QdrantClient(url=url, api_key=key, check_compatibility=False)
        raw.create_collection(name, vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE))
        e = QdrantClientEngine(url=url, api_key=key, collection=name)
        e.ensure_collection(DIM)
        e.upsert([_point("a"), _point("b")])
        flt = {"superseded_by": {"is_empty": True}}
        assert len(e.newest(flt, 0, 5)) == 2 and e.count(flt) == 2 and e.facet("memory_type") == {"note": 2}


def test_a_wrong_vector_size_is_refused_readably(tmp_path: Path) -> None:
    with server(tmp_path / "q", api_key=KEY) as (url, key, _s):
        name = f"wrong_{uuid.uuid4().hex[:8]}"
        QdrantClientEngine(url=url, api_key=key, collection=name).ensure_collection(8)
        with pytest.raises(ConfigError) as err:
            QdrantClientEngine(url=url, api_key=key, collection=name).ensure_collection(DIM)
        msg = err.value.message
        assert "8 dimensions" in msg and f"needs {DIM} dimensions" in msg and "CLARITY_QDRANT_COLLECTION" in msg
        assert redact(url) in msg and (key or "no-key") not in msg


def test_the_api_key_is_required_and_never_shown(tmp_path: Path) -> None:
    with server(tmp_path / "q", api_key=KEY) as (url, key, _s):
        if not key:
            pytest.skip("the real server here runs without an API key")
        with pytest.raises(ServerRefused) as err:
            QdrantClientEngine(url=url, api_key="wrong-key", collection="x").ensure_collection(DIM)
        assert "401" in err.value.message and redact(url) in err.value.message
        assert "wrong-key" not in err.value.message and "b'" not in err.value.message


def test_failures_end_by_the_deadline_and_say_what_is_known(tmp_path: Path) -> None:
    with server(tmp_path / "q", api_key=KEY) as (url, key, standin):
        if standin is None:
            pytest.skip("needs the stand-in: a real server cannot be stopped or slowed from here")
        e = QdrantClientEngine(url=url, api_key=key, collection="fail")
        e.ensure_collection(DIM)
        standin.set_delay(3000)  # slower than the deadline: the write was sent, its outcome unknown
        t0 = time.monotonic()
        with pytest.raises(ServerOutcomeUnknown, match="outcome is unknown") as unknown, \
                call_deadline(time.monotonic() + 1.0):
            e.upsert([_point("slow")])
        assert time.monotonic() - t0 < 1.5 and redact(url) in unknown.value.message
        standin.set_delay(0)
        standin.fail_next(3)  # 503s are retried
        with call_deadline(time.monotonic() + 10):
            e.upsert([_point("after three 503s")])
        standin.stop()
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable, match="Nothing was applied"), call_deadline(time.monotonic() + 1.0):
            e.upsert([_point("refused")])
        assert time.monotonic() - t0 < 1.5
        threading.Timer(0.5, standin.start).start()  # back within the deadline: the retry lands
        with call_deadline(time.monotonic() + 20):
            e.upsert([_point("after the restart")])
        assert e.count() >= 2


def test_status_names_the_server_never_the_key() -> None:
    assert redact("https://user:pw@qdrant.example:6333/?api-key=s") == "https://qdrant.example:6333/"
    assert insecure_key("http://10.0.0.5:6333", "k") is not None
    assert insecure_key("https://10.0.0.5:6333", "k") is None
    assert insecure_key("http://127.0.0.1:6333", "k") is None and insecure_key("http://10.0.0.5:6333", None) is None


def test_each_project_gets_its_collection(tmp_path: Path) -> None:
    def project(name: str, remote: str | None) -> Path:
        root = tmp_path / name
        (root / ".git").mkdir(parents=True)
        cfg = f'[core]\n\tbare = false\n[remote "origin"]\n\turl = {remote}\n' if remote else "[core]\n"
        (root / ".git" / "config").write_text(cfg)
        return root / ".claude" / "alunai-clarity"

    a = derived_collection(project("a/api", "git@github.com:team/api.git"))
    b = derived_collection(project("b/api", "https://github.com/team/api"))
    c = derived_collection(project("c/api", None))
    d = derived_collection(project("d/api", None))
    assert a == b and a.startswith("clarity_api_") and len({a, c, d}) == 3
