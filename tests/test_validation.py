"""Input validation at the request models, the MCP tool layer's error mapping, and the known
owner/peer difference (`offset=2**64`) through real servers.

Each bad request below was accepted, crashed with a TypeError, or depended on the role before:
every one is now InvalidArgument with a message that names the field and the problem.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError

from clarity.config import load_settings
from clarity.coordination.coordinator import Coordinator
from clarity.errors import InvalidArgument
from clarity.mcp_server import build_server
from clarity.memory import model as m
from clarity.memory import service
from clarity.memory.arguments import parse
from clarity.memory.results import ListResult
from clarity.memory.service import MemoryService
from clarity.session_client import ToolCallError
from tests.conftest import open_sessions, owner_session, run_async
from tests.fuzz_support import deep

ID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def store(**kw: Any) -> dict[str, Any]:
    return {"id": ID, "content": "x", **kw}


BAD: list[tuple[type[m._Req], dict[str, Any], str]] = [
    (m.ListRequest, {"offset": 2**64}, "offset: must be at most 1000000000, not 18446744073709551616"),
    (m.ListRequest, {"offset": 10**9 + 1}, "offset"),
    (m.ListRequest, {"limit": "5"}, 'limit: must be an integer, not the string "5"'),
    (m.ListRequest, {"include_content": 1}, "include_content: must be true or false, not the number 1"),
    (m.RetrieveRequest, {"query": "q", "min_similarity": float("nan")},
     "min_similarity: must be a finite number, not nan"),
    (m.RetrieveRequest, {"query": "q", "types": ["note"] * 101}, "types: must hold at most 100 items, not 101"),
    (m.StoreRequest, store(importance=float("inf")), "importance: must be a finite number, not inf"),
    (m.StoreRequest, store(metadata={"a": 2**64}), "metadata.a is an integer outside the 64-bit range"),
    (m.StoreRequest, store(metadata={"a": [-(2**63) - 1]}), "metadata.a[0] is an integer outside"),
    (m.StoreRequest, store(context={"a": float("nan")}), "context.a must be a finite number"),
    (m.StoreRequest, store(metadata={"a": "x\ud800"}), "metadata.a is not valid Unicode"),
    (m.StoreRequest, store(metadata={"a\x00": 1}), "a key of metadata contains the control character U+0000"),
    (m.StoreRequest, store(metadata={"a": "bell\x07"}), "metadata.a contains the control character U+0007"),
    (m.StoreRequest, store(metadata=deep(33)), "nested more than 32 levels deep"),
    (m.StoreRequest, store(metadata=deep(400)), "nested more than 32 levels deep"),
    (m.StoreRequest, store(metadata={"t": (1, 2)}), "metadata.t holds a tuple, which is not a JSON value"),
    (m.StoreRequest, store(content="nul\x00"), "content: the text contains the control character U+0000"),
    (m.StoreRequest, store(content="esc\x1b[31m"), "U+001B"),
    (m.StoreRequest, store(tags=["two\nlines"]), "tags[0]: the tag contains the control character U+000A"),
    (m.StoreRequest, store(session="s" * 201), "session: must be at most 200 characters, not 201"),
    (m.StoreRequest, store(id="x" * 5000), "is not a memory id"),
    (m.UpdateRequest, {"memory_id": ID, "updates": {"metadata": {"n": 2**70}}}, "updates.metadata: metadata.n"),
    (m.UpdateRequest, {"memory_id": ID, "updates": {"importance": "0.5"}},
     'updates.importance: must be a number or null, not the string "0.5"'),
    (m.DeleteRequest, {"memory_ids": []}, "memory_ids: must hold at least 1 item, not 0"),
    (m.StatsRequest, {"verbose": True}, "verbose: not an argument of memory_stats (it takes none)"),
]


@pytest.mark.parametrize(("model", "args", "needle"), BAD, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_are_invalid_arguments_with_readable_messages(model: type[m._Req], args: dict[str, Any],
                                                                   needle: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse(model, args)
    assert needle in e.value.message
    assert len(e.value.message) < 1000


def test_good_requests_still_parse() -> None:
    req = parse(m.StoreRequest, store(content="tab\there\nnewline ✓ 🚀", importance=1, tags=["naïve"],
                                        metadata={"n": 2**63 - 1, "neg": -(2**63), "f": 1.5},
                                        context=deep(31), session="cli-1"))
    assert req.importance == 1.0 and req.metadata["n"] == 2**63 - 1
    assert parse(m.ListRequest, {"offset": 10**9}).offset == 10**9
    assert parse(m.StatsRequest, {}) is not None


def test_stats_refuses_unknown_arguments_in_the_service(home: Path) -> None:
    svc = MemoryService(load_settings(home), lambda: pytest.fail("stats must not open the engine"), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="verbose"):
        svc.execute("stats", {"verbose": True})


def test_an_unexpected_engine_error_is_a_readable_tool_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (a crashing engine cannot be produced on demand): the owner's list operation
    raises a RuntimeError; the tool answers with its kind and message, not the SDK's bare
    "Error executing tool list_memories"."""

    def broken(self: MemoryService, req: m.ListRequest) -> ListResult:
        raise RuntimeError("engine fell over")

    broken_list = dataclasses.replace(service.OPERATIONS["list"], handler=broken)
    monkeypatch.setattr(service, "OPERATIONS", {**service.OPERATIONS, "list": broken_list})
    coordinator = Coordinator(load_settings(home))
    try:
        server = build_server(load_settings(home), coordinator)
        with pytest.raises(ToolError) as e:
            anyio.run(server.call_tool, "list_memories", {})
        assert not isinstance(e.value, UnexpectedToolError)
        assert "RuntimeError: engine fell over" in str(e.value)
    finally:
        coordinator.close()


def test_owner_and_peer_refuse_huge_offsets_and_deep_json_alike(home: Path) -> None:
    """Before: for `offset=2**64` the owner answered an empty page, a forwarding peer "Error executing
    tool list_memories" (orjson cannot encode 2**64 on the owner's socket); JSON nested 150 deep was
    stored. (Deeper than about 200 levels a request never reaches Clarity: the MCP SDK cannot parse
    it and sends no answer.)"""

    async def main() -> None:
        async with open_sessions(home, 2) as sessions:
            await sessions[0].call("memory_stats")
            index, owner = await owner_session(sessions)
            peer = sessions[1 - index]
            messages = []
            for s in (owner, peer):
                with pytest.raises(ToolCallError) as e:
                    await s.call("list_memories", {"offset": 2**64})
                messages.append(e.value.message)
            assert messages[0] == messages[1]
            assert "offset: must be at most 1000000000, not 18446744073709551616" in messages[0]
            assert (await peer.call("list_memories", {"offset": 10**9}))["memories"] == []
            kept = await owner.call("store_memory", {"content": "keep me", "context": {"ok": 1}})
            before = await owner.call("list_memories", {"include_content": True})
            for s in (owner, peer):
                for tool, args in (("store_memory", {"content": "deep", "metadata": deep(150)}),
                                   ("update_memory", {"memory_id": kept["id"], "updates": {"context": deep(150)}})):
                    with anyio.fail_after(60), pytest.raises(ToolCallError) as e:
                        await s.call(tool, args)
                    assert "nested more than 32 levels deep" in e.value.message
            assert await peer.call("list_memories", {"include_content": True}) == before

    run_async(main)
