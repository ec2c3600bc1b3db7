"""Batching at the owner: MemoryService.store_batch (each item answered as if stored on its own, in turn;
a single store is a batch of one) and the owner's group commit through real `clarity serve` sessions
(stores queued while the owner is busy share one embedding call and one engine write)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from clarity import timings
from clarity.config import load_settings
from clarity.encoders.dense import Embedder
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.errors import ClarityError, InvalidArgument
from clarity.memory import model as m
from clarity.memory.model import new_id
from clarity.memory.service import MemoryService
from tests.conftest import open_sessions, run_async
from tests.harness.sessions import all_memories, owner_session


@pytest.fixture
def svc(home: Path, tmp_path: Path) -> Any:
    from clarity.config import DEFAULT_MODEL

    s = load_settings(home)
    service = MemoryService(s, lambda: EdgeEngine(edge_dir(s.qdrant_path)), Embedder(DEFAULT_MODEL, tmp_path / "c"))
    yield service
    service.close()


def _req(content: str, id_: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"id": id_ or new_id(), "content": content, **kw}


def test_store_batch_one_embedding_call_and_per_item_semantics(svc: MemoryService) -> None:
    first = svc.execute("store", _req("already stored before the batch"))
    retry_id = new_id()
    batch = [
        _req("alpha fact", retry_id),
        _req("beta fact"),
        _req("alpha fact"),  # duplicate within the batch (same type): duplicate_of the first alpha
        _req("alpha fact", memory_type="decision"),  # another type: its own memory
        _req("already stored before the batch"),  # duplicate of a stored memory
        _req("alpha fact", retry_id),  # the same id again with the same content: idempotent
        _req("other text", retry_id),  # the same id with other content: refused
        _req(""),  # invalid: refused, changes nothing
        _req("", first["id"]),
    ]
    timings.reset()
    out = svc.store_batch(batch)
    assert timings.snapshot()["counters"]["embed_calls"] == 1
    assert timings.snapshot()["counters"]["embedded_texts"] == 3
    r = [x if isinstance(x, dict) else x for x in out]
    assert isinstance(r[0], dict) and r[0]["stored"] and r[0]["id"] == retry_id
    assert isinstance(r[1], dict) and r[1]["stored"]
    assert isinstance(r[2], dict) and not r[2]["stored"] and r[2]["duplicate_of"] == retry_id
    assert isinstance(r[3], dict) and r[3]["stored"] and r[3]["id"] != retry_id
    assert isinstance(r[4], dict) and r[4]["duplicate_of"] == first["id"]
    assert isinstance(r[5], dict) and r[5]["stored"] and r[5]["id"] == retry_id
    assert isinstance(r[6], InvalidArgument)
    assert isinstance(r[7], ClarityError) and isinstance(r[8], ClarityError)
    listed = svc.execute("list", {"limit": 100, "include_content": True})
    assert sorted(m["content"] for m in listed["memories"]) == sorted(
        ["already stored before the batch", "alpha fact", "alpha fact", "beta fact"])
    # the whole batch again (a retry): nothing new, every answer the same
    again = svc.store_batch(batch)
    assert [x["id"] if isinstance(x, dict) else type(x) for x in again] == \
        [x["id"] if isinstance(x, dict) else type(x) for x in out]
    assert svc.execute("stats", {})["total"] == 4


def test_concurrent_stores_through_servers_are_batched_and_stored_once(home: Path) -> None:
    n_sessions, per_session = 6, 8

    async def main() -> None:
        async with open_sessions(home, n_sessions) as ss:
            await ss[0].call("store_memory", {"content": "warm the owner"})
            _, own = await owner_session(ss)
            before = (await own.call("coordination_status"))["timings"]["counters"]
            shared: list[dict[str, Any]] = []

            async def writer(i: int) -> None:
                for k in range(per_session):
                    await ss[i].call("store_memory", {"content": f"w{i} k{k}", "tags": ["b"]})
                # every session stores the same text at once: stored once, the others duplicate_of
                shared.append(await ss[i].call("store_memory", {"content": "shared text", "tags": ["b"]}))

            async with anyio.create_task_group() as tg:
                for i in range(n_sessions):
                    tg.start_soon(writer, i)
            after = (await own.call("coordination_status"))["timings"]["counters"]
            mems = await all_memories(ss[0], ["b"])
            contents = sorted(m["content"] for m in mems)
            expected = sorted([f"w{i} k{k}" for i in range(n_sessions) for k in range(per_session)] + ["shared text"])
            assert contents == expected
            assert len({r["id"] for r in shared}) == 1
            assert sum(1 for r in shared if r["duplicate_of"] is None) == 1
            stores = n_sessions * (per_session + 1)
            embed_calls = after.get("embed_calls", 0) - before.get("embed_calls", 0)
            batched = after.get("batched_stores", 0) - before.get("batched_stores", 0)
            batches = after.get("store_batches", 0) - before.get("store_batches", 0)
            assert batched == stores, (batched, stores)
            assert batches < stores and embed_calls < stores, (batches, embed_calls, stores)

    run_async(main)


class RecordingEngine:
    """An engine that records each upsert (per point: its id and its `superseded_by`) and can fail them."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.upserts: list[list[tuple[str, str | None]]] = []
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def upsert(self, points: Any) -> None:
        if self.fail:
            raise RuntimeError("the disk is full")
        self.upserts.append([(p.id, p.payload.get("superseded_by")) for p in points])
        self.engine.upsert(points)


def _outcome(answer: dict[str, Any] | ClarityError) -> tuple[Any, ...]:
    if isinstance(answer, ClarityError):
        return type(answer).__name__, answer.message
    return answer["id"], answer["stored"], answer["duplicate_of"]


def _chains(service: MemoryService) -> dict[str, tuple[str | None, str | None]]:
    return {x["id"]: (x.get("supersedes"), x.get("superseded_by"))
            for x in service.execute("export", {})["memories"]}


def test_a_batch_answers_and_writes_as_its_items_stored_one_by_one(svc: MemoryService, tmp_path: Path) -> None:
    """Supersedes inside a batch: each item sees the items before it (a memory an earlier item stored
    or superseded), and every item's two writes keep their order (new memories first)."""
    s = load_settings(tmp_path / "single")
    single = MemoryService(s, lambda: EdgeEngine(edge_dir(s.qdrant_path)), svc.embedder)
    rec = RecordingEngine(EdgeEngine(edge_dir(svc.settings.qdrant_path)))
    batched = MemoryService(svc.settings, lambda: rec, svc.embedder)  # type: ignore[arg-type, return-value]
    svc.close()
    a, b, x, s1, s2, t, u, d, v, missing = (new_id() for _ in range(10))
    try:
        for service in (batched, single):
            service.execute("store", {"id": a, "content": "deploys run on Tuesdays", "memory_type": "decision"})
            service.execute("store", {"id": b, "content": "the cache is Redis"})
        batch: list[dict[str, Any] | m.Request] = [
            {"id": x, "content": "the queue is Dramatiq"},
            {"id": s1, "content": "deploys run on Wednesdays", "memory_type": "decision", "supersedes": a},
            {"id": s2, "content": "deploys run on Fridays", "memory_type": "decision", "supersedes": a},
            {"id": t, "content": "the worker queue is Celery now", "supersedes": x},  # an earlier item
            {"id": u, "content": "orphan", "supersedes": missing},
            {"id": d, "content": "deploys run on Wednesdays", "memory_type": "decision", "supersedes": b},
            m.StoreRequest(id=s1, content="deploys run on Wednesdays", memory_type="decision", supersedes=a),
            {"id": v, "content": "background jobs use RQ", "supersedes": t},  # a chain inside the batch
        ]
        out = batched.store_batch(batch)
        one_by_one: list[dict[str, Any] | ClarityError] = []
        for item in batch:
            try:
                one_by_one.append(single.execute("store", item))
            except ClarityError as e:
                one_by_one.append(e)
        assert [_outcome(r) for r in out] == [_outcome(r) for r in one_by_one] == [
            (x, True, None), (s1, True, None),
            ("InvalidArgument", f"supersedes: memory {a} is already superseded by {s1}"),
            (t, True, None), ("InvalidArgument", f"supersedes: no memory with id {missing}"),
            (s1, False, s1), (s1, True, None), (v, True, None)]
        assert _chains(batched) == _chains(single) == {
            a: (None, s1), b: (None, None), x: (None, t), s1: (a, None), t: (x, v), v: (t, None)}
        assert rec.upserts[-2:] == [[(x, None), (s1, None), (t, None), (v, None)], [(a, s1), (x, t), (t, v)]]
        # the whole batch again (a retry): the same answers, nothing written
        writes = len(rec.upserts)
        assert [_outcome(r) for r in batched.store_batch(batch)] == [_outcome(r) for r in out]
        assert len(rec.upserts) == writes
    finally:
        single.close()
        batched.close()


def test_a_failed_write_acknowledges_no_item_and_invalid_items_open_nothing(svc: MemoryService) -> None:
    rec = RecordingEngine(EdgeEngine(edge_dir(svc.settings.qdrant_path)))
    svc.close()
    service = MemoryService(svc.settings, lambda: rec, svc.embedder)  # type: ignore[arg-type, return-value]
    try:
        service.execute("store", _req("kept"))
        rec.fail = True
        with pytest.raises(RuntimeError, match="disk is full"):
            service.store_batch([_req("lost one"), _req("lost two", supersedes=new_id())])
        with pytest.raises(RuntimeError, match="disk is full"):
            service.execute("store", _req("lost three"))
        rec.fail = False
        assert [x["content"] for x in service.execute("export", {})["memories"]] == ["kept"]
        timings.reset()
        service.store_batch([_req("written"), _req("kept")])
        assert timings.snapshot()["engine"]["n"] == 1  # the engine stage: one write per batch
    finally:
        service.close()
    closed = MemoryService(svc.settings, lambda: pytest.fail("the engine was opened"), svc.embedder)
    out = closed.store_batch([_req(""), {"content": "no id"}, [1, 2]])  # type: ignore[list-item]
    assert [type(x) for x in out] == [InvalidArgument] * 3
    assert isinstance(out[2], InvalidArgument) and out[2].message == "arguments must be a JSON object"
    with pytest.raises(InvalidArgument, match="must not be empty"):
        closed.execute("store", _req("  "))
