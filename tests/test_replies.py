"""Tool replies through a real `clarity serve` and the Python MCP client: store and update answer what
happened (not the memory: get_memory returns it), answers carry no null placeholders, and the output
schemas a client validates every answer against are flat (no anyOf)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import run_async

STORE_KEYS = {"id", "stored", "duplicate_of", "created_at", "similar_to"}


def test_store_and_update_answer_what_happened_and_get_memory_has_the_memory(home: Path) -> None:
    async def main() -> None:
        async with SessionClient(home) as s:
            text = "The staging database is reset every night at 02:00 UTC"
            new = await s.call("store_memory", {"content": text, "memory_type": "fact", "tags": ["db"],
                                                "metadata": {"by": "ops"}})
            assert set(new) == STORE_KEYS and new["stored"] and new["duplicate_of"] is None
            again = await s.call("store_memory", {"content": text, "memory_type": "fact"})
            assert set(again) == STORE_KEYS and not again["stored"]
            assert again["duplicate_of"] == again["id"] == new["id"] and again["created_at"] == new["created_at"]
            got = await s.call("get_memory", {"memory_id": new["id"]})
            assert got["content"] == text and got["tags"] == ["db"] and got["metadata"] == {"by": "ops"}
            assert got["created_at"] == new["created_at"]
            up = await s.call("update_memory", {"memory_id": new["id"], "updates": {"importance": 0.9}})
            assert set(up) == {"id", "updated_fields", "reembedded", "updated_at"}
            assert up["updated_fields"] == ["importance"] and not up["reembedded"]
            assert (await s.call("get_memory", {"memory_id": new["id"]}))["updated_at"] == up["updated_at"]
            # bad input: a readable error, nothing stored or changed
            with pytest.raises(ToolCallError, match="importance"):
                await s.call("store_memory", {"content": "another text", "importance": 7})
            with pytest.raises(ToolCallError, match="importance"):
                await s.call("update_memory", {"memory_id": new["id"], "updates": {"importance": 7}})
            stats = await s.call("memory_stats")
            assert stats["total"] == 1
            assert (await s.call("get_memory", {"memory_id": new["id"]}))["importance"] == 0.9

    run_async(main)


def test_answers_leave_out_null_fields_and_output_schemas_are_flat(home: Path) -> None:
    async def main() -> None:
        async with SessionClient(home) as s:
            await s.call("store_memory", {"content": "Deploys go through the blue-green switch in deploy.sh"})
            hits = await s.call("retrieve_memory", {"query": "how do deploys switch", "min_similarity": -1})
            assert hits["memories"]
            for m in hits["memories"]:
                assert None not in m.values(), m
                assert "metadata" not in m and "supersedes" not in m and m["similarity"] is not None
            listed = await s.call("list_memories", {})
            assert listed["memories"] and all(None not in m.values() for m in listed["memories"])
            assert s.client is not None
            schemas = {t.name: t.output_schema for t in (await s.client.list_tools()).tools}
            for name in ("store_memory", "update_memory", "retrieve_memory", "list_memories"):
                assert "anyOf" not in json.dumps(schemas[name]), name

    run_async(main)
