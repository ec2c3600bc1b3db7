"""Server mode's race table (issue 19) through real `clarity serve` sessions on one Qdrant server, with no
lease and no owner: the stand-in server process (tests/harness/qdrant_standin), or the real server CI's
`qdrant-server` job names in QDRANT_SERVER_URL. Two rounds of each race here; scripts/server_races.py
runs more and prints the table.

Also: six sessions starting at once on a new collection all serve; a stand-in restart during writes
loses nothing acknowledged and reports no landed write as failed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio

from clarity.errors import ToolCallError
from tests.conftest import all_memories, open_sessions, run_async
from tests.harness.qdrant_standin import server
from tests.harness.server_races import dedup_round, supersede_round, update_round


def _env(url: str, key: str | None) -> dict[str, str]:
    env = {"CLARITY_ENGINE": "qdrant", "CLARITY_QDRANT_URL": url,
           "CLARITY_QDRANT_COLLECTION": f"clarity_test_{uuid.uuid4().hex[:8]}"}
    if key:
        env["CLARITY_QDRANT_API_KEY"] = key
    return env


def test_races_answer_as_the_embedded_store(home: Path, tmp_path: Path) -> None:
    with server(tmp_path / "qdrant", api_key="test-key", strict=True) as (url, key, _s):
        async def main() -> None:
            async with open_sessions(home, 4, env=_env(url, key)) as sessions:
                for _ in range(2):
                    d = await dedup_round(sessions)
                    assert d == {"copies": 1, "stored_answers": 1, "errors": 0}, d
                    s = await supersede_round(sessions)
                    assert s == {"succeeded": 1, "refused": 1, "chain_ok": True, "loser_left": 0}, s
                    u = await update_round(sessions)
                    assert u == {"lost": 0, "errors": 0}, u
                st = await sessions[0].call("coordination_status", {})
                assert st["this_process"]["role"] == "direct" and st["owner"] is None

        run_async(main)


def test_six_sessions_start_at_once_on_a_new_collection(home: Path, tmp_path: Path) -> None:
    with server(tmp_path / "qdrant", api_key="test-key") as (url, key, _s):
        async def main() -> None:
            async with open_sessions(home, 6, env=_env(url, key)) as sessions:
                assert len(sessions) == 6
                answers: list[object] = [None] * 6

                async def first(i: int) -> None:
                    answers[i] = await sessions[i].call("list_memories", {"limit": 5})

                async with anyio.create_task_group() as tg:
                    for i in range(6):
                        tg.start_soon(first, i)
                assert all(isinstance(a, dict) and a["total"] == 0 for a in answers), answers

        run_async(main)


def test_restart_during_writes_loses_nothing_acknowledged(home: Path, tmp_path: Path) -> None:
    with server(tmp_path / "qdrant", api_key="test-key") as (url, key, standin):
        if standin is None:
            return  # a real server cannot be restarted from here; the stand-in run covers it
        env = {**_env(url, key), "CLARITY_CALL_DEADLINE_S": "8"}
        acked: list[str] = []
        failed: list[tuple[str, str]] = []

        async def main() -> None:
            async with open_sessions(home, 3, env=env) as sessions:
                stop = time.monotonic() + 6

                async def writer(i: int) -> None:
                    n = 0
                    while time.monotonic() < stop:
                        content = f"writer {i} note {n} {uuid.uuid4().hex}"
                        n += 1
                        t0 = time.monotonic()
                        try:
                            res = await sessions[i].call("store_memory", {"content": content})
                            acked.append(res["id"])
                        except ToolCallError as e:
                            failed.append((content, e.message))
                        assert time.monotonic() - t0 < 8 + 3  # within its deadline (plus MCP overhead)

                async def restarter() -> None:
                    await anyio.sleep(1.5)
                    await anyio.to_thread.run_sync(standin.restart, 1.0)

                async with anyio.create_task_group() as tg:
                    for i in range(3):
                        tg.start_soon(writer, i)
                    tg.start_soon(restarter)
                stored = await all_memories(sessions[0])
                ids = {m["id"] for m in stored}
                assert set(acked) <= ids, "an acknowledged write was lost"
                contents = {m.get("content") for m in stored}
                landed_but_failed = [c for c, msg in failed if c in contents and "outcome is unknown" not in msg]
                assert not landed_but_failed, landed_but_failed

        run_async(main)
        assert acked
