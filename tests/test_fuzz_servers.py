"""Property tests of every MCP tool through real `clarity serve` processes: one session owns the
store, the other forwards its calls to the owner over the socket (both on one home).

Each case makes the same call through the owner and then through the peer: both must accept or both
reject with the same readable message; a rejected call leaves every memory as it was (digest of a
full listing); read-only tools give the same answer in both roles. At the end both servers still
answer. The number of cases run is printed and asserted (CLARITY_FUZZ_SCALE multiplies it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import all_memories, open_sessions, owner_session, run_async
from tests.fuzz_support import Cases, args_for, assert_readable, digest, resolve

SCALE = float(os.environ.get("CLARITY_FUZZ_SCALE", "1"))
TOOLS = {  # tool: (service operation whose strategy it uses, cases)
    "store_memory": ("store", 60), "retrieve_memory": ("retrieve", 40), "list_memories": ("list", 50),
    "get_memory": ("get", 40), "update_memory": ("update", 60), "delete_memory": ("delete", 40),
    "memory_stats": ("stats", 20), "coordination_status": ("stats", 20),
}
SAME_ANSWER = {"retrieve_memory", "list_memories", "get_memory", "memory_stats"}


async def outcome(session: SessionClient, tool: str, args: dict[str, Any]) -> tuple[str, Any]:
    """("ok", result) or ("error", message); anything else the client raises propagates."""
    try:
        return "ok", await session.call(tool, args)
    except ToolCallError as e:
        return "error", e.message


class Fuzz:
    """Runs hypothesis in a worker thread; each call goes back to the event loop's sessions."""

    def __init__(self, owner: SessionClient, peer: SessionClient) -> None:
        self.owner, self.peer = owner, peer
        self.cases = Cases()

    def call(self, session: SessionClient, tool: str, args: dict[str, Any]) -> tuple[str, Any]:
        return anyio.from_thread.run(outcome, session, tool, args)

    def memories(self) -> list[dict[str, Any]]:
        return anyio.from_thread.run(all_memories, self.owner)  # type: ignore[no-any-return]

    def run(self, tool: str, op: str, n: int) -> None:
        strategy = args_for(op, server=True)

        @settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def case(data: st.DataObject) -> None:
            before = self.memories()
            args = resolve(data.draw(strategy, label="args"), sorted(m["id"] for m in before))
            first = self.call(self.owner, tool, args)
            if first[0] == "error":
                assert_readable(first[1])
                assert digest(self.memories()) == digest(before), f"rejected {tool} (owner) changed the store"
            second = self.call(self.peer, tool, args)
            if second[0] == "error":
                assert_readable(second[1])
            if first[0] == "error" or second[0] == "error":
                assert first == second, f"{tool} owner {first!r:.500} peer {second!r:.500}"
                assert digest(self.memories()) == digest(before), f"rejected {tool} (peer) changed the store"
            elif tool in SAME_ANSWER:
                assert first[1] == second[1], \
                    f"{tool}: owner and peer answered differently: {first!r:.700} / {second!r:.700}"
            self.cases.add(tool, "accepted" if first[0] == "ok" else "rejected")

        case()


def test_fuzz_every_tool_through_owner_and_peer(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> Cases:
        async with open_sessions(home, 2) as sessions:
            for i in range(4):
                await sessions[0].call("store_memory", {"content": f"seed {i}", "tags": ["seed"],
                                                        "metadata": {"i": i}})
            index, owner = await owner_session(sessions)
            peer = sessions[1 - index]
            assert (await peer.call("coordination_status"))["this_process"]["role"] in ("peer", "standby")
            fuzz = Fuzz(owner, peer)
            for tool, (op, n) in TOOLS.items():
                await anyio.to_thread.run_sync(fuzz.run, tool, op, n)
            for s in (owner, peer):  # both servers still answer
                assert (await s.call("memory_stats"))["total"] == len(await all_memories(owner))
            assert (await peer.call("coordination_status"))["this_process"]["role"] in ("peer", "standby")
            return fuzz.cases

    cases = run_async(main)
    with capsys.disabled():
        print(f"\nfuzz cases through servers (owner + peer each): {cases.summary()}")
    assert cases.counts["total"] >= 0.9 * sum(n for _op, n in TOOLS.values()) * SCALE
    for tool in TOOLS:
        assert cases.counts[f"{tool}:accepted"] > 0, tool
