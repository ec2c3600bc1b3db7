"""The tools' `tools/list` entry stays small (every session pays for it in its context) and loses
nothing a client uses: a real `clarity serve` driven by the MCP client lists the 8 tools in at most
10,000 characters of JSON, each with its annotations and an output schema; every answer of every tool
validates against its listed output schema and against the full schema it was compacted from; and a
compacted input schema accepts exactly the values the full one accepts (`compact_schema`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp.server.mcpserver.tools.base import Tool
from pydantic import BaseModel

from clarity.errors import InvalidArgument
from clarity.mcp_server import compact_schema
from clarity.memory import model as m
from clarity.memory.arguments import input_schema, parse
from clarity.memory.budget import MemoryPage, SizedListResult, SizedRetrieveResult
from clarity.memory.results import DeleteResult, StatsResult, StoreResult, UpdateResult
from clarity.session_client import SessionClient
from tests.conftest import run_async

MAX_TOOLS_LIST_CHARS = 10_000  # issue 21: 18,906 before (the 8 tools as compact JSON)
RESULTS: dict[str, type[BaseModel]] = {
    "store_memory": StoreResult, "retrieve_memory": SizedRetrieveResult, "list_memories": SizedListResult,
    "get_memory": MemoryPage, "update_memory": UpdateResult, "delete_memory": DeleteResult,
    "memory_stats": StatsResult,
}
ARGS: dict[str, type[m.Request]] = {
    "store_memory": m.StoreArgs, "retrieve_memory": m.RetrieveArgs, "list_memories": m.ListArgs,
    "get_memory": m.GetArgs, "update_memory": m.UpdateRequest, "delete_memory": m.DeleteRequest,
    "memory_stats": m.StatsRequest, "coordination_status": m.StatusArgs,
}
ID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def full_output_schema(result: type[BaseModel]) -> dict[str, Any]:
    """The output schema the MCP SDK makes for a tool answering `result` (before compaction)."""
    async def fn(args: dict[str, Any]) -> Any:
        raise NotImplementedError

    fn.__annotations__["return"] = result
    schema = Tool.from_function(fn).fn_metadata.output_schema
    assert schema is not None
    return schema


def chars(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def walk(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out += walk(v)
    elif isinstance(node, list):
        for v in node:
            out += walk(v)
    return out


def test_tools_list_is_small_keeps_annotations_and_every_answer_validates(home: Path) -> None:
    long_text = "Ingest pipeline design note. " + "stage detail with \"quotes\" and more words\n" * 1200

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
        answers: dict[str, list[Any]] = {name: [] for name in ARGS}
        async with SessionClient(home) as s:
            assert s.client is not None
            listed = await s.client.list_tools()
            tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools]

            async def call(name: str, args: dict[str, Any]) -> Any:
                res = await s.call(name, args)  # the SDK client validates it against the listed schema too
                answers[name].append(res)
                return res

            a = await call("store_memory", {"content": "We use PostgreSQL 16 with pgbouncer in transaction mode",
                                            "memory_type": "decision", "tags": ["db"], "metadata": {"by": "a"},
                                            "context": {"file": "docs/adr/001.md"}})
            await call("store_memory", {"content": "We use PostgreSQL 16 with pgbouncer in transaction mode",
                                        "memory_type": "decision"})
            await call("store_memory", {"content": "We use PostgreSQL 16 with pgbouncer, transaction pooling mode",
                                        "memory_type": "decision", "supersedes": a["id"]})
            big = await call("store_memory", {"content": long_text[:30_000], "memory_type": "note"})
            await call("retrieve_memory", {"query": "which database and connection pooler", "include_metadata": True,
                                           "include_superseded": True})
            await call("retrieve_memory", {"query": "ingest pipeline", "max_chars": 1000})
            await call("list_memories", {"include_content": True, "max_chars": 1000})
            await call("list_memories", {})
            page = await call("get_memory", {"memory_id": big["id"], "max_chars": 2000})
            assert isinstance(page["next_offset"], int)
            end = await call("get_memory", {"memory_id": big["id"], "offset": page["content_chars"] - 10})
            assert end["next_offset"] is None
            await call("get_memory", {"memory_id": a["id"]})
            await call("update_memory", {"memory_id": big["id"], "updates": {"importance": 0.9, "tags": ["x"]}})
            await call("delete_memory", {"memory_ids": [big["id"], ID]})
            await call("memory_stats", {})
            await call("coordination_status", {})
        return tools, answers

    tools, answers = run_async(scenario)
    by_name = {t["name"]: t for t in tools}
    assert sorted(by_name) == sorted(ARGS)
    total = chars(tools)
    assert total <= MAX_TOOLS_LIST_CHARS, {t["name"]: chars(t) for t in tools}
    for name, t in by_name.items():
        ann = t["annotations"]
        assert ann["title"] and ann["openWorldHint"] is False, name
        assert isinstance(ann["readOnlyHint"], bool) and isinstance(ann["destructiveHint"], bool), name
        assert isinstance(ann["idempotentHint"], bool), name
        assert t["outputSchema"]["type"] == "object", name
        for node in walk([t["inputSchema"], t["outputSchema"]]):
            assert "title" not in node or isinstance(node["title"], dict), (name, node)  # a property named title
            assert node.get("default", 1) is not None, (name, node)
        assert "$ref" not in json.dumps(t), name
    for name, result in RESULTS.items():
        listed = Draft202012Validator(by_name[name]["outputSchema"])
        full = Draft202012Validator(full_output_schema(result))
        assert answers[name], name
        for answer in answers[name]:
            assert listed.is_valid(answer), (name, next(listed.iter_errors(answer)).message)
            assert full.is_valid(answer), (name, next(full.iter_errors(answer)).message)
    assert {"max_chars", "trimmed", "omitted"} <= set(by_name["retrieve_memory"]["outputSchema"]["properties"])
    assert {"next_offset", "content_chars"} <= set(by_name["get_memory"]["outputSchema"]["properties"])
    # what the listed output schema still checks: a memory in a list must carry its required keys
    bad = {**answers["list_memories"][1], "memories": [{"id": ID}]}
    assert not Draft202012Validator(by_name["list_memories"]["outputSchema"]).is_valid(bad)


SAMPLES: list[Any] = ["5", "", "note", "x" * 65, 5, 0, -1, 1000, 100_001, 5.5, 0.5, 1.5, True, False, None, [],
                      ["a"], ["Bad Type"], [ID], [""], ["x" * 65], ["tool"], ["web"], {}, {"a": 1},
                      {"importance": 0.5}, {"importance": 2}, {"bogus": 1}, ID]


@pytest.mark.parametrize("name", list(ARGS))
def test_a_compacted_input_schema_accepts_exactly_what_the_full_one_accepts(name: str) -> None:
    full = input_schema(ARGS[name])
    before = copy.deepcopy(full)
    small = compact_schema(full)
    assert full == before  # not changed in place
    assert chars(small) < chars(full)
    a, b = Draft202012Validator(full), Draft202012Validator(small)
    keys = [*full["properties"], "bogus"]
    base: dict[str, Any] = {k: "x" for k in full.get("required", [])}
    base |= {"memory_id": ID, "updates": {"importance": 0.5}, "memory_ids": [ID]}
    base = {k: v for k, v in base.items() if k in full["properties"]}
    variants = [{**base, k: v} for k in keys for v in SAMPLES]
    if "updates" in full["properties"]:
        variants += [{**base, "updates": {k: v}} for k in [*m.MemoryFields.model_fields, "bogus"] for v in SAMPLES]
    for args in variants:
        assert a.is_valid(args) == b.is_valid(args), (name, args)


def test_bounds_left_to_parse_are_still_refused() -> None:
    """Bounds no sensible call comes near are not listed (`_UNREACHABLE`), and parse still refuses them."""
    small = compact_schema(input_schema(m.ListArgs))
    assert "maxItems" not in small["properties"]["types"]
    with pytest.raises(InvalidArgument, match="types"):
        parse(m.ListArgs, {"types": ["note"] * 101})
    with pytest.raises(InvalidArgument, match="offset"):
        parse(m.ListArgs, {"offset": 10**10})
    with pytest.raises(InvalidArgument, match="memory_ids"):
        parse(m.DeleteRequest, {"memory_ids": [ID] * 1001})


def test_compact_output_schema_drops_notes_and_names_only_required_keys_of_nested_models() -> None:
    full = full_output_schema(SizedListResult)
    small = compact_schema(full, output=True)
    assert chars(small) < chars(full) / 3
    assert "$defs" not in small and "description" not in json.dumps(small)
    assert set(small["properties"]) == set(full["properties"])
    item = small["properties"]["memories"]["items"]
    assert item == {"required": full["$defs"]["Memory"]["required"], "type": "object"}
    nullable = compact_schema({"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}], "default": None})
    assert nullable == {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]}  # enum: kept as is
