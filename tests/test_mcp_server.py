"""Real `clarity serve` processes driven by the mcp client over stdio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import open_sessions, run_async
from tests.fuzz_support import assert_readable

TOOLS = ["coordination_status", "delete_memory", "get_memory", "list_memories", "memory_stats",
         "retrieve_memory", "store_memory", "update_memory"]


def test_tools_end_to_end(home: Path) -> None:
    async def main() -> None:
        async with SessionClient(home) as s:
            assert await s.tools() == TOOLS
            pg = await s.call("store_memory", {
                "content": "We use PostgreSQL with pgbouncer for connection pooling",
                "memory_type": "decision", "importance": 0.8, "tags": ["db"],
                "metadata": {"by": "alice"}, "context": {"file": "docs/adr/001.md"}})
            assert pg["stored"] and pg["duplicate_of"] is None and "memory" not in pg
            assert (await s.call("get_memory", {"memory_id": pg["id"]}))["memory_type"] == "decision"
            mk = await s.call("store_memory", {"content": "Makefiles must be indented with tabs, not spaces"})
            # retrieve by meaning: other words than the memory
            hits = await s.call("retrieve_memory", {"query": "what database and connection pool do we use"})
            assert [m["id"] for m in hits["memories"]] == [pg["id"]]
            assert hits["memories"][0]["similarity"] > 0.25
            hits = await s.call("retrieve_memory", {"query": "indentation rules for make files",
                                                    "include_metadata": True})
            assert hits["memories"][0]["id"] == mk["id"] and hits["memories"][0]["metadata"] == {}
            assert (await s.call("retrieve_memory", {"query": "a recipe for banana bread"}))["count"] == 0
            # dedup
            again = await s.call("store_memory", {"content": "Makefiles must be indented with tabs, not spaces"})
            assert not again["stored"] and again["duplicate_of"] == mk["id"]
            # list, newest first
            listed = await s.call("list_memories", {})
            assert listed["total"] == 2 and [m["id"] for m in listed["memories"]] == [mk["id"], pg["id"]]
            assert (await s.call("list_memories", {"types": ["decision"]}))["total"] == 1
            # get, update (re-embeds), delete
            got = await s.call("get_memory", {"memory_id": pg["id"]})
            assert got["context"] == {"file": "docs/adr/001.md"}
            up = await s.call("update_memory", {"memory_id": mk["id"],
                                                "updates": {"content": "Our CI runs on GitHub Actions"}})
            assert up["reembedded"]
            hits = await s.call("retrieve_memory", {"query": "where do our CI builds run"})
            assert hits["memories"][0]["id"] == mk["id"]
            stats = await s.call("memory_stats")
            assert stats["total"] == 2 and stats["by_type"] == {"decision": 1, "note": 1}
            assert stats["engine"] == "qdrant-edge" and stats["dims"] == 384 and stats["storage_bytes"] > 0
            assert (await s.call("delete_memory", {"memory_ids": [pg["id"]]}))["deleted"] == [pg["id"]]
            assert (await s.call("memory_stats"))["total"] == 1

    run_async(main)


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("store_memory", {"content": ""}, "content must not be empty"),
    ("store_memory", {"content": "x", "importance": 3}, "importance"),
    ("store_memory", {"content": "x" * (10 * 1024 * 1024)}, "the limit is 32768 bytes"),
    ("store_memory", {"content": 5}, "content"),
    ("store_memory", {"content": "x", "tags": "one"}, "tags"),
    ("store_memory", {"content": "x", "memory_type": "Bad Type"}, "memory_type"),
    ("retrieve_memory", {"query": "x", "limit": 0}, "limit"),
    ("retrieve_memory", {"query": ""}, "query"),
    ("get_memory", {"memory_id": "00000000-0000-0000-0000-000000000000"}, "no memory with id"),
    ("get_memory", {"memory_id": "nope"}, "not a memory id"),
    ("update_memory", {"memory_id": "00000000-0000-0000-0000-000000000000", "updates": {"importance": 1}},
     "no memory with id"),
    ("update_memory", {"memory_id": "00000000-0000-0000-0000-000000000000", "updates": {"bogus": 1}},
     "updates.bogus: not a field update_memory can change"),
    ("delete_memory", {"memory_ids": "abc"}, "memory_ids"),
    # strict types and no unknown keys through MCP too (tests/test_strictness.py has every tool)
    ("store_memory", {"content": "z1", "bogus": 1}, "bogus: not an argument of store_memory"),
    ("list_memories", {"limit": "5"}, 'limit: must be an integer, not the string "5"'),
    ("retrieve_memory", {"query": "x", "include_metadata": 1}, "include_metadata: must be true or false"),
]


def test_bad_inputs_get_readable_tool_errors_and_change_nothing(home: Path) -> None:
    async def main() -> None:
        # two sessions: errors are raised by the owner and by a forwarding peer alike
        async with open_sessions(home, 2) as sessions:
            keep = await sessions[0].call("store_memory", {"content": "keep me"})
            before = await sessions[0].call("list_memories", {"include_content": True})
            for s in sessions:
                for tool, args, needle in BAD:
                    with pytest.raises(ToolCallError) as e:
                        await s.call(tool, args)
                    assert needle in e.value.message, (tool, e.value.message[:300])
                    assert_readable(e.value.message)  # no traceback, no pydantic text
            assert await sessions[1].call("list_memories", {"include_content": True}) == before
            assert (await sessions[1].call("get_memory", {"memory_id": keep["id"]}))["content"] == "keep me"

    run_async(main)
