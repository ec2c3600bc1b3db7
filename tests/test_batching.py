"""Batching at the owner: MemoryService.store_batch (same semantics per item as op_store) and the
owner's group commit through real `clarity serve` sessions (stores queued while the owner is busy
share one embedding call and one engine write)."""

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
