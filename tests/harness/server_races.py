"""The race table of server mode (issue 19), run through real `clarity serve` sessions (MCP clients) on one
Qdrant server: a stand-in process (tests/harness/qdrant_standin) or, with QDRANT_SERVER_URL, a real one.

Each round uses fresh content, so rounds share the sessions and the collection:
- `dedup_round`: the same content stored by every session at once -> copies stored, answers `stored`;
- `supersede_round`: two sessions supersede one memory at once -> how many succeeded, and that the
  old memory's `superseded_by` is the winner and the loser's memory is gone;
- `update_round`: two sessions update different fields of one memory at once -> fields lost.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from clarity.errors import ToolCallError


async def _all(calls: list[Any]) -> list[Any]:
    out: list[Any] = [None] * len(calls)

    async def one(i: int, fn: Any) -> None:
        try:
            out[i] = await fn()
        except ToolCallError as e:
            out[i] = e

    async with anyio.create_task_group() as tg:
        for i, fn in enumerate(calls):
            tg.start_soon(one, i, fn)
    return out


async def dedup_round(sessions: list[Any]) -> dict[str, int]:
    content = f"The shared build cache lives on volume {uuid.uuid4().hex}"
    answers = await _all([lambda s=s: s.call("store_memory", {"content": content}) for s in sessions])
    errors = [a for a in answers if isinstance(a, Exception)]
    stored = [a for a in answers if not isinstance(a, Exception) and a.get("duplicate_of") is None]
    listed = (await sessions[0].call("list_memories", {"limit": 100, "include_content": True}))["memories"]
    return {"copies": sum(1 for m in listed if m.get("content") == content), "stored_answers": len(stored),
            "errors": len(errors)}


async def supersede_round(sessions: list[Any]) -> dict[str, Any]:
    old = await sessions[0].call("store_memory", {"content": f"The deploy window is Tuesday ({uuid.uuid4().hex})"})
    tag = uuid.uuid4().hex
    answers = await _all([
        lambda s=s, i=i: s.call("store_memory", {"content": f"The deploy window is now day {i} ({tag})",
                                                 "supersedes": old["id"]})
        for i, s in enumerate(sessions[1:3])])
    won = [a for a in answers if not isinstance(a, Exception)]
    refused = [a for a in answers if isinstance(a, ToolCallError) and "already superseded" in a.message]
    after = await sessions[0].call("get_memory", {"memory_id": old["id"]})
    listed = (await sessions[0].call("list_memories", {"limit": 100, "include_content": True}))["memories"]
    successors = [m for m in listed if tag in (m.get("content") or "")]
    loser_present = len(successors) - len(won)
    return {"succeeded": len(won), "refused": len(refused),
            "chain_ok": bool(won) and after.get("superseded_by") == won[0]["id"], "loser_left": loser_present}


async def update_round(sessions: list[Any]) -> dict[str, int]:
    mem = await sessions[0].call("store_memory", {"content": f"Release train notes {uuid.uuid4().hex}",
                                                  "importance": 0.5})
    tag = f"t{uuid.uuid4().hex[:8]}"
    answers = await _all([
        lambda: sessions[1].call("update_memory", {"memory_id": mem["id"], "updates": {"tags": [tag]}}),
        lambda: sessions[2].call("update_memory", {"memory_id": mem["id"], "updates": {"importance": 0.9}}),
    ])
    after = await sessions[0].call("get_memory", {"memory_id": mem["id"]})
    lost = int(after.get("tags") != [tag]) + int(after.get("importance") != 0.9)
    return {"lost": lost, "errors": sum(1 for a in answers if isinstance(a, Exception))}
