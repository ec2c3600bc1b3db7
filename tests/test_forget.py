"""`clarity forget --session ID`: every memory one session wrote goes (its tools' memories, superseded ones
included, and its hooks' digests), every other session's stays; it asks first or needs `--yes`; it works
while real `clarity serve` sessions run (through the coordination layer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson

from tests.harness.sessions import SessionGroup

from .conftest import cli, run_async

FIXTURE = Path(__file__).parent / "fixtures" / "transcripts" / "basic.jsonl"
CLAUDE_SESSION = "5d0c2a7e-3f4b-4c1e-9a8d-2b6f1e0c7a91"


def _all(home: Path) -> list[dict[str, Any]]:
    return orjson.loads(cli(home, "export").stdout)["memories"]  # type: ignore[no-any-return]


def test_forget_removes_what_one_session_wrote_and_nothing_else(home: Path) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            group = SessionGroup(tg, home, marker="forget-test-")
            a, b = await group.start(2)
            try:
                first = await a.call("store_memory", {"content": "session A: the cache TTL is 300 s"})
                await a.call("store_memory", {"content": "session A: the cache TTL is 600 s now",
                                              "supersedes": first["id"]})
                for i in range(5):
                    await a.call("store_memory", {"content": f"session A note {i}", "tags": ["a"]})
                    await b.call("store_memory", {"content": f"session B note {i}", "tags": ["b"]})
                # the hook of a Claude Code session stores its digest under that session's id
                ran = subprocess.run([sys.executable, "-m", "clarity", "hook", "stop", "--home", str(home)],
                                     input=json.dumps({"session_id": CLAUDE_SESSION, "transcript_path": str(FIXTURE),
                                                       "hook_event_name": "Stop"}).encode(),
                                     capture_output=True, timeout=120, env=dict(os.environ))
                assert ran.returncode == 0 and ran.stdout == b"", ran.stderr

                # no terminal, no --yes: refused, nothing deleted
                refused = cli(home, "forget", "--session", "forget-test-0", check=False)
                assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr
                assert len(_all(home)) == 13

                done = cli(home, "forget", "--session", "forget-test-0", "--yes", "--json")
                assert orjson.loads(done.stdout) == {"session": "forget-test-0", "deleted": 7}
                left = _all(home)
                assert sorted({m["session"] for m in left}) == [CLAUDE_SESSION, "forget-test-1"]
                assert len(left) == 6
                listed = await b.call("list_memories", {"sessions": ["forget-test-0"]})
                assert listed["total"] == 0  # the sessions see it at once

                done = cli(home, "forget", "--session", CLAUDE_SESSION, "--yes")
                assert done.stdout.strip() == f"deleted 1 memories of session {CLAUDE_SESSION}"
                assert {m["session"] for m in _all(home)} == {"forget-test-1"}

                again = cli(home, "forget", "--session", CLAUDE_SESSION, "--yes")
                assert again.returncode == 0 and "no memory of session" in again.stdout
            finally:
                await group.stop()

    run_async(main)


def test_forget_refuses_a_bad_session_id_and_creates_no_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = cli(home, "forget", "--session", "a\nb", "--yes", check=False)
    assert bad.returncode == 2 and "session" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    none = cli(home, "forget", "--session", "anything", "--yes")
    assert none.returncode == 0 and "no memory of session anything" in none.stdout
    assert not home.exists()
