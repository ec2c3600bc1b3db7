"""Start-up stays light: a session imports nothing heavy (numpy, the model, an engine library) before a
call needs it, and a non-owner that is not the standby never does, even after forwarding calls."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from tests.conftest import open_sessions, run_async

HEAVY = {"numpy", "fastembed", "onnxruntime", "qdrant_edge", "qdrant_client"}


def test_nothing_heavy_before_the_first_call_and_never_in_a_plain_peer(home: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 1) as (first,):
            me = (await first.call("coordination_status"))["this_process"]
            assert me["role"] in ("idle", "peer") and HEAVY.isdisjoint(me["heavy_imports"]), me
            assert "heavy_imports" in me
            await first.call("store_memory", {"content": "the first call makes this session the owner"})
            me = (await first.call("coordination_status"))["this_process"]
            assert me["role"] == "owner" and {"numpy", "qdrant_edge"} <= set(me["heavy_imports"]), me
            async with open_sessions(home, 2) as others:
                end = time.monotonic() + 60
                roles: list[dict[str, object]] = []
                while time.monotonic() < end:
                    roles = [(await s.call("coordination_status"))["this_process"] for s in others]
                    if any(r["role"] == "standby" for r in roles):
                        break
                    await anyio.sleep(0.1)
                plain = [s for s, r in zip(others, roles, strict=True) if r["role"] == "peer"]
                assert len(plain) == 1, roles
                found = await plain[0].call("retrieve_memory", {"query": "who owns"})
                assert found["memories"]
                me = (await plain[0].call("coordination_status"))["this_process"]
                assert me["role"] == "peer" and me["heavy_imports"] == [], me

    run_async(main)
