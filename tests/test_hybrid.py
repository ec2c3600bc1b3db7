"""Hybrid search, since/until, supersede and similar_to through a real `clarity serve` (MCP client),
plus the same small ranking on the qdrant-client engine (local mode) in process.

The identifier case is a regression test: with dense-only search the memory naming PG_POOL_MAX
ranks second behind a memory about Postgres pools in general."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clarity.config import load_settings
from clarity.memory.service import build_service
from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import run_async

MEMS = [
    "Set PG_POOL_MAX=40 in the worker env before the batch import",
    "The Postgres connection pool maximum is tuned per service; pools above the max block new clients",
    "Postgres pool sizing: the maximum number of pooled connections for the API is 20",
    "Connection pooling max settings for the database live in the infra repo",
    "The retry budget for webhook deliveries is five attempts",
]


def test_hybrid_time_supersede_similar_through_server(home: Path) -> None:
    async def go() -> None:
        async with SessionClient(home) as s:
            ids = [(await s.call("store_memory", {"content": c}))["id"] for c in MEMS]
            first = {}
            for mode in ("hybrid", "semantic", "keyword"):
                r = await s.call("retrieve_memory", {"query": "PG_POOL_MAX", "mode": mode})
                assert r["mode"] == mode
                first[mode] = r["memories"][0]["id"]
            assert first["hybrid"] == ids[0]  # the identifier's memory first, by default
            assert first["keyword"] == ids[0]
            r = await s.call("retrieve_memory", {"query": "PG_POOL_MAX"})
            assert r["memories"][0]["id"] == ids[0] and r["mode"] == "hybrid"
            with pytest.raises(ToolCallError):
                await s.call("retrieve_memory", {"query": "x", "mode": "fuzzy"})
            # since/until: a pre-filter on created_at
            time.sleep(1.1)
            cut = datetime.now(UTC).isoformat()
            time.sleep(0.1)
            late = (await s.call("store_memory", {"content": "Webhook retries were raised to seven"}))["id"]
            r = await s.call("retrieve_memory", {"query": "PG_POOL_MAX", "since": cut, "min_similarity": -1})
            assert [m["id"] for m in r["memories"]] == [late]  # the best match is older: never shown
            r = await s.call("retrieve_memory", {"query": "PG_POOL_MAX", "until": cut})
            assert late not in [m["id"] for m in r["memories"]] and r["memories"][0]["id"] == ids[0]
            r = await s.call("retrieve_memory", {"query": "PG_POOL_MAX", "since": "10m"})
            assert r["memories"][0]["id"] == ids[0]
            with pytest.raises(ToolCallError, match="since"):
                await s.call("retrieve_memory", {"query": "x", "since": "yesterday"})
            # supersede
            new = (await s.call("store_memory", {"content": "The webhook retry budget is now seven attempts",
                                                 "supersedes": ids[4]}))
            old = await s.call("get_memory", {"memory_id": ids[4]})
            assert old["superseded_by"] == new["id"]
            assert (await s.call("get_memory", {"memory_id": new["id"]}))["supersedes"] == ids[4]
            r = await s.call("retrieve_memory", {"query": "webhook retry budget", "min_similarity": -1,
                                                 "limit": 10})
            assert ids[4] not in [m["id"] for m in r["memories"]]
            r = await s.call("retrieve_memory", {"query": "webhook retry budget", "include_superseded": True,
                                                 "limit": 10})
            assert ids[4] in [m["id"] for m in r["memories"]]
            listed = await s.call("list_memories", {"limit": 100})
            assert ids[4] not in [m["id"] for m in listed["memories"]]
            with pytest.raises(ToolCallError, match="supersedes"):
                await s.call("store_memory", {"content": "z", "supersedes": str(uuid.uuid4())})
            # similar_to: a reworded copy is stored and reported
            res = await s.call("store_memory", {"content": "Set PG_POOL_MAX=40 in the worker environment "
                                                           "before the batch import"})
            assert res["stored"] and [x["id"] for x in res["similar_to"]] == [ids[0]]
            assert res["similar_to"][0]["similarity"] >= 0.85
            other = await s.call("store_memory", {"content": "Set PG_POOL_MAX=40 in the worker environment "
                                                             "before the batch import", "memory_type": "fact"})
            assert other["similar_to"] == []  # another type is not a near-copy

    run_async(go)


def _top(engine: str, tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    mp.setenv("CLARITY_ENGINE", engine)
    settings = load_settings(tmp / engine)
    svc = build_service(settings)
    try:
        ids = []
        for c in MEMS:
            ids.append(svc.execute("store", {"id": str(uuid.uuid4()), "content": c})["id"])
        out = {}
        for mode in ("hybrid", "semantic", "keyword"):
            r = svc.execute("retrieve", {"query": "PG_POOL_MAX", "mode": mode, "limit": 3})
            out[mode] = [ids.index(m["id"]) for m in r["memories"]]
        return out
    finally:
        svc.close()


def test_both_engines_rank_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edge, client = _top("edge", tmp_path, monkeypatch), _top("qdrant", tmp_path, monkeypatch)
    assert edge["hybrid"][0] == 0 and edge["semantic"][0] != 0
    assert edge == client


def test_recency_and_importance_weights_reorder_through_server(home: Path, tmp_path: Path) -> None:
    """Off by default (search order); recency_weight lifts the newer of two equally relevant memories,
    importance_weight the more important one. Timestamps are backdated through `clarity import`."""
    import orjson

    from tests.conftest import cli

    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    dump = tmp_path / "two.json"
    dump.write_bytes(orjson.dumps({"memories": [
        {"id": old, "content": "The nightly backup job copies the orders database to cold storage",
         "importance": 0.9, "created_at": "2025-01-01T00:00:00+00:00"},
        {"id": new, "content": "The nightly backup job copies the orders database to cold storage at 2am",
         "importance": 0.1, "created_at": datetime.now(UTC).isoformat()},
    ]}))
    cli(home, "import", str(dump))

    async def go() -> None:
        async with SessionClient(home) as s:
            q = {"query": "nightly backup of the orders database"}
            plain = [m["id"] for m in (await s.call("retrieve_memory", q))["memories"]]
            recent = [m["id"] for m in (await s.call("retrieve_memory", {**q, "recency_weight": 0.5}))["memories"]]
            weighty = [m["id"] for m in (await s.call("retrieve_memory",
                                                      {**q, "importance_weight": 0.5}))["memories"]]
            assert set(plain[:2]) == {old, new}
            assert recent[0] == new and weighty[0] == old
            with pytest.raises(ToolCallError, match="recency_weight"):
                await s.call("retrieve_memory", {**q, "recency_weight": 0.9})

    run_async(go)
