"""Stores queued at the owner embed early (clarity/encoders/dense.py `start_early`, started by
clarity/coordination/batcher.py): the vectors are the ones a store computes anyway, every store lands, and
the early runs are taken."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np

from clarity.config import DEFAULT_MODEL
from clarity.encoders.dense import Embedder
from clarity.memory import model as m
from clarity.memory.batch_store import store_text
from clarity.memory.indexed_text import dense_text
from tests.conftest import run_async
from tests.harness.sessions import open_sessions


def test_store_text_is_what_a_store_embeds() -> None:
    ctx = {"file": "billing/retry.py", "line": 12}
    req = m.StoreArgs.model_validate({"content": "Retries back off.", "context": ctx}).request(m.new_id(), "s-1")
    want = dense_text({"content": "Retries back off.", "context": ctx})
    assert store_text(req) == want
    assert store_text({"content": "Retries back off.", "context": ctx}) == want
    assert store_text({"content": "Retries back off."}) == "Retries back off."
    for args in ({"content": "a <private>key</private>"}, {"content": "  "}, {"content": 5}, {}, ["x"], None):
        assert store_text(args) is None, args


def test_early_vectors_equal_a_runs_own_and_the_rest_is_embedded(tmp_path: Path) -> None:
    texts = ["The billing job retries with exponential back-off.", "Exports run in UTC.", "Deploys need two reviews."]
    fresh = Embedder(DEFAULT_MODEL, tmp_path)
    alone = [np.asarray(fresh.embed([t])[0]) for t in texts]
    emb = Embedder(DEFAULT_MODEL, tmp_path)
    assert emb.start_early(texts[0]) is False  # the model is not loaded: nothing starts
    emb.embed(["load the model"])
    assert emb.start_early(texts[0]) is True and emb.start_early(texts[0]) is False  # once per text
    assert emb.start_early(texts[2]) is True
    for fut in list(emb._early.values()):  # both runs done: they are taken, not embedded again in the batch
        fut.result(timeout=120)
    got = [np.asarray(v) for v in emb.embed(texts)]
    for t, a, g in zip(texts, alone, got, strict=True):
        assert float(a @ g / (np.linalg.norm(a) * np.linalg.norm(g))) > 0.99, t
    # the early ones are exactly a lone run's vectors, and were taken (not kept for later)
    assert np.array_equal(got[0], alone[0]) and np.array_equal(got[2], alone[2])
    assert not emb._early
    # with both threads busy on long texts, a third run may not have started when its batch comes (then it is
    # cancelled and embedded with the batch): started or not, the batch gets its vector and keeps nothing
    emb._early_pool = None  # a fresh pool
    busy = [f"Long text number {i}. " * 40 for i in range(2)]
    for b in busy:
        emb.start_early(b)
    emb.start_early(texts[1])
    again = [np.asarray(v) for v in emb.embed([texts[1], *busy])]
    assert float(again[0] @ alone[1] / (np.linalg.norm(again[0]) * np.linalg.norm(alone[1]))) > 0.99
    assert not emb._early


def test_concurrent_stores_embed_early_at_the_owner_and_all_land(home: Path) -> None:
    topics = ["kafka", "nginx", "terraform", "grafana", "sentry", "celery"]

    async def main() -> None:
        async with open_sessions(home, len(topics)) as sessions:
            await sessions[0].call("retrieve_memory", {"query": "load the model"})
            ids: dict[str, str] = {}

            async def write(i: int) -> None:
                for k in range(6):
                    text = f"Session {i} note {k}: the team pinned {topics[i]} to release {k}.{i}"
                    ids[text] = (await sessions[i].call("store_memory", {"content": text}))["id"]

            async with anyio.create_task_group() as tg:
                for i in range(len(topics)):
                    tg.start_soon(write, i)
            counters = {}
            for s in sessions:
                st = await s.call("coordination_status")
                if st["this_process"]["role"] == "owner":
                    counters = st["timings"]["counters"]
            # stores waited behind batches and took the vectors started for them
            assert counters.get("early_embeds_used", 0) >= 1, counters
            assert (await sessions[1].call("memory_stats"))["total"] == len(ids) == 36
            for text in list(ids)[::7]:
                hit = await sessions[2].call("retrieve_memory", {"query": text, "limit": 1})
                assert hit["memories"][0]["id"] == ids[text]

    run_async(main)
