"""One strictness, everywhere (issue 17, part 6): README says argument types are strict ("5" is not 5);
that holds through MCP as through the CLI and the owner's socket. Every tool refuses an unknown key, a
string for a number, a number for a boolean, a float for an integer and null where null is not
allowed, with a message in Clarity's words (never pydantic's text or a link to errors.pydantic.dev),
and changes nothing; the tools' input schemas say the same (`additionalProperties: false`, exact
types) so a client knows before calling.

Before, through MCP: `{"limit": "5"}`, `{"importance": "0.5"}` and `{"include_metadata": 1}` were
accepted (the MCP SDK's lenient model of the tool's signature), `{"content": "z1", "bogus": 1}` stored
"z1", and a type error read `1 validation error for list_memoriesArguments ... [type=int_type, ...]
For further information visit https://errors.pydantic.dev/...`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from jsonschema import Draft202012Validator

from clarity.config import load_settings
from clarity.coordination.coordinator import Coordinator
from clarity.errors import InvalidArgument
from clarity.mcp_server import compact_schema
from clarity.memory import model as m
from clarity.memory.arguments import input_schema, parse
from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import all_memories, cli, open_sessions, owner_session, run_async
from tests.fuzz_support import PYDANTIC_TEXT, assert_readable, digest

ID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
KEEP = "{keep}"  # stands for the id of the memory every refused call must leave alone
STORE_FIELDS = "content, memory_type, importance, tags, metadata, context, supersedes"

# (tool, arguments, what the message must say); each is refused and changes nothing
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # store_memory
    ("store_memory", {"content": "z1", "bogus": 1},
     f"bogus: not an argument of store_memory (expected: {STORE_FIELDS})"),
    ("store_memory", {"content": "z1", "id": ID}, "id: not an argument of store_memory"),
    ("store_memory", {"content": "z1", "session": "me"}, "session: not an argument of store_memory"),
    ("store_memory", {"content": "z1", "importance": "0.5"}, 'importance: must be a number, not the string "0.5"'),
    ("store_memory", {"content": "z1", "importance": True}, "importance: must be a number, not true"),
    ("store_memory", {"content": "z1", "importance": None}, "importance: must be a number, not null"),
    ("store_memory", {"content": None}, "content: must be a string, not null"),
    ("store_memory", {"content": 5}, "content: must be a string, not the number 5"),
    ("store_memory", {"content": "z1", "memory_type": None}, "memory_type: must be a string, not null"),
    ("store_memory", {"content": "z1", "tags": "db"}, 'tags: must be an array of strings or null, not the string "db"'),
    ("store_memory", {"content": "z1", "tags": [1]}, "tags[0]: must be a string, not the number 1"),
    ("store_memory", {"content": "z1", "metadata": "by ci"},
     'metadata: must be an object or null, not the string "by ci"'),
    ("store_memory", {"memory_type": "note"}, "content: is required"),
    # retrieve_memory
    ("retrieve_memory", {"query": "q", "limit": "5"}, 'limit: must be an integer, not the string "5"'),
    ("retrieve_memory", {"query": "q", "limit": 5.0}, "limit: must be an integer, not the number 5.0"),
    ("retrieve_memory", {"query": "q", "limit": None}, "limit: must be an integer, not null"),
    ("retrieve_memory", {"query": "q", "include_metadata": 1},
     "include_metadata: must be true or false, not the number 1"),
    ("retrieve_memory", {"query": "q", "include_superseded": "true"},
     'include_superseded: must be true or false, not the string "true"'),
    ("retrieve_memory", {"query": "q", "min_similarity": "0.5"},
     'min_similarity: must be a number or null, not the string "0.5"'),
    ("retrieve_memory", {"query": "q", "mode": "fuzzy"},
     'mode: must be "hybrid", "semantic" or "keyword", not the string "fuzzy"'),
    ("retrieve_memory", {"query": "q", "max_chars": 20000.0}, "max_chars: must be an integer, not the number 20000.0"),
    ("retrieve_memory", {"query": "q", "importance": 0.5},
     "importance: not an argument of retrieve_memory (expected: query,"),
    ("retrieve_memory", {"query": None}, "query: must be a string, not null"),
    # list_memories
    ("list_memories", {"limit": "5"}, 'limit: must be an integer, not the string "5"'),
    ("list_memories", {"offset": 1.5}, "offset: must be an integer, not the number 1.5"),
    ("list_memories", {"include_content": 1}, "include_content: must be true or false, not the number 1"),
    ("list_memories", {"limit": None}, "limit: must be an integer, not null"),
    ("list_memories", {"include_superseded": True}, "include_superseded: not an argument of list_memories"),
    ("list_memories", {"max_chars": "20000"}, 'max_chars: must be an integer, not the string "20000"'),
    # get_memory
    ("get_memory", {"memory_id": KEEP, "offset": "0"}, 'offset: must be an integer, not the string "0"'),
    ("get_memory", {"memory_id": KEEP, "offset": True}, "offset: must be an integer, not true"),
    ("get_memory", {"memory_id": KEEP, "max_chars": 1000.5}, "max_chars: must be an integer, not the number 1000.5"),
    ("get_memory", {"memory_id": None}, "memory_id: must be a string, not null"),
    ("get_memory", {"memory_id": KEEP, "bogus": 1},
     "bogus: not an argument of get_memory (expected: memory_id, offset, max_chars)"),
    # update_memory
    ("update_memory", {"memory_id": KEEP, "updates": {"importance": "0.9"}},
     'updates.importance: must be a number or null, not the string "0.9"'),
    ("update_memory", {"memory_id": KEEP, "updates": {"importance": True}},
     "updates.importance: must be a number or null, not true"),
    ("update_memory", {"memory_id": KEEP, "updates": {"importance": 0.9}, "bogus": 1},
     "bogus: not an argument of update_memory (expected: memory_id, updates)"),
    ("update_memory", {"memory_id": KEEP, "updates": {"colour": "red"}},
     "updates.colour: not a field update_memory can change (expected: content, memory_type, importance, tags, "
     "metadata, context)"),
    ("update_memory", {"memory_id": KEEP, "updates": None}, "updates: must be an object, not null"),
    ("update_memory", {"memory_id": 5, "updates": {"importance": 0.9}},
     "memory_id: must be a string, not the number 5"),
    # delete_memory
    ("delete_memory", {"memory_ids": [KEEP], "bogus": 1},
     "bogus: not an argument of delete_memory (expected: memory_ids)"),
    ("delete_memory", {"memory_ids": KEEP}, "memory_ids: must be an array of strings, not the string"),
    ("delete_memory", {"memory_ids": [5]}, "memory_ids[0]: must be a string, not the number 5"),
    ("delete_memory", {"memory_ids": None}, "memory_ids: must be an array of strings, not null"),
    # memory_stats, coordination_status: no arguments at all
    ("memory_stats", {"verbose": True}, "verbose: not an argument of memory_stats (it takes none)"),
    ("memory_stats", {"verbose": 1, "x": None}, "verbose, x: not an argument of memory_stats (it takes none)"),
    ("coordination_status", {"verbose": True}, "verbose: not an argument of coordination_status (it takes none)"),
]
TOOLS_MODELS: dict[str, type[m.Request]] = {
    "store_memory": m.StoreArgs, "retrieve_memory": m.RetrieveArgs, "list_memories": m.ListArgs,
    "get_memory": m.GetArgs, "update_memory": m.UpdateRequest, "delete_memory": m.DeleteRequest,
    "memory_stats": m.StatsRequest, "coordination_status": m.StatusArgs,
}


def _fill(value: Any, keep: str) -> Any:
    if value == KEEP:
        return keep
    if isinstance(value, dict):
        return {k: _fill(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, keep) for v in value]
    return value


def assert_clarity_words(message: str) -> None:
    assert_readable(message)
    assert "invalid arguments: " in message and "http" not in message, message


def test_every_tool_refuses_wrong_arguments_in_clarity_words_and_changes_nothing(home: Path) -> None:
    """Through the owner and through a peer (a second session): the same message, nothing stored."""

    async def main() -> None:
        async with open_sessions(home, 2) as sessions:
            keep = (await sessions[0].call("store_memory", {"content": "keep me", "tags": ["kept"]}))["id"]
            index, owner = await owner_session(sessions)
            peer = sessions[1 - index]
            before = digest(await all_memories(owner))
            for tool, args, needle in REFUSED:
                messages = []
                for s in (owner, peer):
                    with pytest.raises(ToolCallError) as e:
                        await s.call(tool, _fill(args, keep))
                    assert needle in e.value.message, (tool, args, e.value.message)
                    assert_clarity_words(e.value.message)
                    messages.append(e.value.message)
                assert messages[0] == messages[1], (tool, args)
            assert digest(await all_memories(peer)) == before
            assert (await owner.call("memory_stats"))["total"] == 1
            assert (await peer.call("get_memory", {"memory_id": keep}))["content"] == "keep me"
            assert (await peer.call("retrieve_memory", {"query": "z1", "mode": "keyword"}))["count"] == 0

    run_async(main)


STORE_KEYS = {"id", "stored", "duplicate_of", "created_at", "similar_to"}


def test_calls_that_were_valid_still_work_the_same(home: Path) -> None:
    """Ints for numbers, null for optional arguments, and arrays or objects sent as JSON strings (some
    clients do, Claude Code among them; the MCP SDK decoded them) are accepted as before."""

    async def main() -> None:
        async with SessionClient(home) as s:
            a = await s.call("store_memory", {"content": "Deploys run from deploy.sh on the release branch",
                                              "importance": 1, "tags": None, "metadata": None, "context": None,
                                              "supersedes": None})
            assert set(a) == STORE_KEYS and a["stored"]
            got = await s.call("get_memory", {"memory_id": a["id"], "offset": 0, "max_chars": 1000})
            assert (got["importance"], got["tags"], got["metadata"], got["context"]) == (1.0, [], {}, {})
            b = await s.call("store_memory", {"content": "The CI cache lives in the ci-cache bucket",
                                              "tags": '["ci", "ops"]', "metadata": '{"by": "ops"}'})
            got = await s.call("get_memory", {"memory_id": b["id"]})
            assert got["tags"] == ["ci", "ops"] and got["metadata"] == {"by": "ops"}
            hits = await s.call("retrieve_memory", {"query": "where do deploys run", "limit": 2, "min_similarity": -1,
                                                    "recency_weight": 0, "importance_weight": None, "types": None,
                                                    "tags": None, "since": None, "until": None,
                                                    "include_metadata": True, "include_superseded": False,
                                                    "mode": "hybrid", "max_chars": 20_000})
            assert hits["memories"][0]["id"] == a["id"] and hits["count"] == 2
            assert (await s.call("list_memories", {"tags": '["ops"]'}))["total"] == 1
            listed = await s.call("list_memories", {"types": None, "tags": None, "limit": 1000, "offset": 0,
                                                    "include_content": False, "max_chars": 100_000})
            assert listed["total"] == 2 and listed["limit"] == 1000
            up = await s.call("update_memory", {"memory_id": a["id"].upper(),
                                                "updates": {"importance": None, "tags": ["deploy"]}})
            assert up["updated_fields"] == ["tags"] and up["id"] == a["id"]
            up = await s.call("update_memory", {"memory_id": a["id"], "updates": '{"importance": 0.25}'})
            assert up["updated_fields"] == ["importance"]
            assert (await s.call("delete_memory", {"memory_ids": [b["id"], ID]}))["not_found"] == [ID]
            assert (await s.call("memory_stats", {}))["total"] == 1
            assert (await s.call("coordination_status", {}))["this_process"]["role"] == "owner"

    run_async(main)


def test_input_schemas_refuse_unknown_keys_and_give_exact_types(home: Path) -> None:
    """What `tools/list` shows is the model `parse` checks: a client validating against it is refused
    before calling for every type and unknown-key case above, and accepts the valid calls."""

    async def main() -> dict[str, dict[str, Any]]:
        async with SessionClient(home) as s:
            assert s.client is not None
            return {t.name: t.input_schema for t in (await s.client.list_tools()).tools}

    schemas = run_async(main)
    assert set(schemas) == set(TOOLS_MODELS)
    for name, schema in schemas.items():
        assert schema == compact_schema(input_schema(TOOLS_MODELS[name])), name  # the same values accepted
        assert schema["additionalProperties"] is False, name
    props = {name: s["properties"] for name, s in schemas.items()}
    assert props["memory_stats"] == {} and props["coordination_status"] == {}
    limit = props["retrieve_memory"]["limit"]
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == ("integer", 1, 100, 5)
    assert props["retrieve_memory"]["include_metadata"]["type"] == "boolean"
    assert props["retrieve_memory"]["mode"]["enum"] == ["hybrid", "semantic", "keyword"]
    assert props["retrieve_memory"]["min_similarity"]["type"] == ["number", "null"]
    imp = props["store_memory"]["importance"]
    assert (imp["type"], imp["minimum"], imp["maximum"]) == ("number", 0, 1)
    assert props["list_memories"]["max_chars"]["type"] == "integer"
    updates = props["update_memory"]["updates"]
    assert updates["type"] == "object" and updates["additionalProperties"] is False
    assert set(updates["properties"]) == {"content", "memory_type", "importance", "tags", "metadata", "context"}
    assert "$ref" not in str(schemas) and "$defs" not in str(schemas)
    for tool, args, needle in REFUSED:
        if needle.endswith(".0"):  # 5.0 for an integer: JSON Schema counts 5.0 an integer, Clarity does not
            continue
        assert not Draft202012Validator(schemas[tool]).is_valid(_fill(args, ID)), (tool, args)


# values of every JSON type (5.0 left out: JSON Schema counts it an integer, Clarity does not)
SAMPLES: list[Any] = ["5", "", "note", 5, 0, -1, 5.5, 0.5, True, False, None, [], ["a"], [ID], {}, {"a": 1},
                      {"importance": 0.5}, ID]
BASE: dict[type[m.Request], dict[str, Any]] = {
    m.StoreArgs: {"content": "x"}, m.RetrieveArgs: {"query": "q"}, m.ListArgs: {}, m.GetArgs: {"memory_id": ID},
    m.UpdateRequest: {"memory_id": ID, "updates": {"importance": 0.5}}, m.DeleteRequest: {"memory_ids": [ID]},
    m.StatsRequest: {}, m.StatusArgs: {},
}


@pytest.mark.parametrize("model", list(BASE), ids=[x.__name__ for x in BASE])
def test_the_schema_and_parse_agree_on_every_argument_and_type(model: type[m.Request]) -> None:
    """For each argument (and one unknown key, and each field of `updates`) set to a value of every JSON
    type: whatever `parse` accepts the schema accepts, whatever the schema refuses `parse` refuses, and
    a refusal for the type (`must be ..., not ...`) is one the schema makes too. (The schema cannot
    say everything parse checks: ids are UUIDs, texts have no control characters, ...)"""
    schema = input_schema(model)
    checker = Draft202012Validator(schema)
    keys = [*schema["properties"], "bogus"]
    variants = [{**BASE[model], k: v} for k in keys for v in SAMPLES]
    if model is m.UpdateRequest:
        variants += [{**BASE[model], "updates": {k: v}} for k in [*m.MemoryFields.model_fields, "bogus"]
                     for v in SAMPLES]
    assert len(variants) >= len(SAMPLES)
    for args in variants:
        try:
            parse(model, args)
            accepted, message = True, ""
        except InvalidArgument as e:
            accepted, message = False, e.message
            assert_readable(message)
        by_schema = checker.is_valid(args)
        assert by_schema or not accepted, f"{model.__name__} {args}: parse accepts what the schema refuses"
        if ", not " in message and "must be" in message and "must be at" not in message:
            assert not by_schema, f"{model.__name__} {args}: the schema accepts a wrong type: {message}"


def test_messages_name_the_problem_without_pydantic_text() -> None:
    cases: list[tuple[type[m.Request], Any, str]] = [
        (m.StatsRequest, [1], "arguments: must be an object, not an array"),
        (m.ListRequest, {"offset": 2**64}, "offset: must be at most 1000000000, not 18446744073709551616"),
        (m.ListRequest, {"limit": 10**60}, "limit: must be at most 1000, not an integer of about 61 digits"),
        (m.ListRequest, {"limit": 2**400}, "limit: must be at most 1000, not an integer of about 121 digits"),
        (m.RetrieveRequest, {"query": "q", "types": ["note"] * 101}, "types: must hold at most 100 items, not 101"),
        (m.GetArgs, {"memory_id": ID, "offset": -1}, "offset: must be at least 0, not -1"),
        (m.StoreArgs, {"content": "x", "memory_type": "Bad Type"},
         'memory_type: must be a short slug (a lowercase letter, then up to 31 lowercase letters, digits, _ or -), '
         'not the string "Bad Type"'),
        (m.StoreArgs, {"content": "x", "tags": ["t" * 65]}, "tags[0]: must be at most 64 characters, not 65"),
        (m.StoreArgs, {"content": "x", "supersedes": "nope"}, 'supersedes: "nope" is not a memory id (a UUID)'),
        (m.StoreArgs, {"content": "x", "b\x00": 1, "a" * 100: 2},
         '"b\\u0000", "' + "a" * 40 + '" (100 characters): not an argument of store_memory'),
        (m.StoreArgs, {"content": "x", "tags": "y" * 5000},
         'tags: must be an array of strings or null, not the string "' + "y" * 40 + '" (5000 characters)'),
        (m.RetrieveArgs, {"query": ""}, "query: must not be empty"),
        (m.DeleteRequest, {"memory_ids": [ID, "nope"]}, 'memory_ids[1]: "nope" is not a memory id (a UUID)'),
        (m.StoreRequest, {"id": ID, "content": "x", "bogus": 1},
         "bogus: not an argument of the store operation (expected: id, content, memory_type,"),
        (m.ExportRequest, {"with_vectors": 1}, "with_vectors: must be true or false, not the number 1"),
        (m.BackupRequest, {"to": "/tmp"}, "to: not an argument of backup (it takes none)"),
    ]
    for model, args, needle in cases:
        with pytest.raises(InvalidArgument) as e:
            parse(model, args)
        assert needle in e.value.message, e.value.message
        assert not any(p in e.value.message for p in PYDANTIC_TEXT), e.value.message
    many = {f"k{i}": i for i in range(30)} | {"limit": "x", "offset": "y"}
    with pytest.raises(InvalidArgument) as e:
        parse(m.ListRequest, many)
    assert "k0, k1, k2, k3, k4, k5, k6, k7 and 22 more: not an argument" in e.value.message
    assert len(e.value.message) < 1000


def test_a_parsed_tool_call_becomes_the_same_request_json_would() -> None:
    """`narrow` and `StoreArgs.request` build the operation's request without validating again: the same
    request as parsing the JSON the tool would have sent."""
    args = parse(m.RetrieveArgs, {"query": "q", "limit": 7, "types": ["note"], "min_similarity": -1,
                                    "recency_weight": 0.25, "max_chars": 5000})
    req = m.narrow(m.RetrieveRequest, args)
    assert type(req) is m.RetrieveRequest
    assert req == parse(m.RetrieveRequest, req.model_dump())
    assert req.model_dump() == {**args.model_dump(exclude={"max_chars"})}
    lst = m.narrow(m.ListRequest, parse(m.ListArgs, {"offset": 3, "include_content": True}))
    assert lst == parse(m.ListRequest, {"offset": 3, "include_content": True})
    assert lst.include_superseded is False
    got = m.narrow(m.GetRequest, parse(m.GetArgs, {"memory_id": ID.upper(), "offset": 9}))
    assert got == m.GetRequest(memory_id=ID)
    store = parse(m.StoreArgs, {"content": "c", "importance": 0.1234567, "tags": None, "supersedes": ID.upper()})
    sreq = store.request(ID, "s1")
    assert sreq == parse(m.StoreRequest, {"id": ID, "content": "c", "importance": 0.1234567, "session": "s1",
                                            "supersedes": ID})
    assert sreq.importance == 0.123457 and sreq.tags == [] and sreq.metadata == {}
    with pytest.raises(InvalidArgument, match="session: the session contains the control character U\\+0007"):
        m.session_name("bell\x07")
    with pytest.raises(InvalidArgument, match="session: must be at most 200 characters, not 201"):
        m.session_name("s" * 201)


def cli_refusals(home: Path) -> None:
    """Two `clarity store` calls the store operation's parse refuses: exit 2, Clarity's words on stderr."""
    bad = cli(home, "store", "a CLI memory", "--type", "Not A Slug", check=False)
    assert bad.returncode == 2 and 'memory_type: must be a short slug' in bad.stderr, bad.stderr
    assert not any(p in bad.stderr for p in PYDANTIC_TEXT), bad.stderr
    bad = cli(home, "store", "a CLI memory", "--importance", "2", check=False)
    assert bad.returncode == 2 and "importance: must be at most 1.0, not 2.0" in bad.stderr, bad.stderr


FORWARDED: list[tuple[str, dict[str, Any], str]] = [
    ("store", {"id": str(uuid.uuid4()), "content": "z1", "bogus": 1},
     "bogus: not an argument of the store operation (expected: "),
    ("list", {"limit": "5"}, 'limit: must be an integer, not the string "5"'),
    ("retrieve", {"query": "q", "include_metadata": 1}, "include_metadata: must be true or false, not the number 1"),
    ("update", {"memory_id": ID, "updates": {"importance": "0.5"}},
     'updates.importance: must be a number or null, not the string "0.5"'),
    ("stats", {"verbose": True}, "verbose: not an argument of memory_stats (it takes none)"),
]


def forward_raw_json(home: Path) -> None:
    """A coordinator in this process (a peer: `clarity serve` owns the store) sends JSON arguments as
    they are over the owner's socket; the owner refuses them."""
    coordinator = Coordinator(load_settings(home))
    try:
        for op, args, needle in FORWARDED:
            with pytest.raises(InvalidArgument) as e:
                coordinator.call(op, args)
            assert needle in e.value.message, e.value.message
            assert_clarity_words(e.value.message)
            assert coordinator.role == "peer", coordinator.role
    finally:
        coordinator.close()


def test_the_cli_and_a_call_over_the_owners_socket_get_the_same_words(home: Path) -> None:
    """The CLI alone (it owns the store for its one call), then the CLI and a coordinator forwarding to
    a `clarity serve` that owns the store: refused by the store operation's parse in Clarity's words."""
    cli_refusals(home)

    async def main() -> None:
        async with SessionClient(home) as s:
            assert (await s.call("memory_stats"))["total"] == 0  # takes the lease
            assert (await s.call("coordination_status"))["this_process"]["role"] == "owner"
            await anyio.to_thread.run_sync(cli_refusals, home)
            await anyio.to_thread.run_sync(forward_raw_json, home)
            assert (await s.call("memory_stats"))["total"] == 0

    run_async(main)
