"""Server mode against a real Qdrant server: every session talks to it directly, with no lease and no owner.

No Qdrant server can run on the machines this suite is developed on, so this file runs only where one is
reachable: the GitHub workflow's `qdrant-server` job starts `qdrant/qdrant` as a service container and sets
QDRANT_SERVER_URL. Elsewhere it is skipped with that reason (the same code path runs in
tests/test_engine_qdrant_client.py against qdrant-client's local mode)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import open_sessions, run_async

URL = os.environ.get("QDRANT_SERVER_URL")
pytestmark = pytest.mark.skipif(not URL, reason="needs a Qdrant server: set QDRANT_SERVER_URL (CI's service "
                                               "container does)")


def test_two_sessions_share_a_server_store_without_a_lease(home: Path) -> None:
    assert URL is not None
    env = {"CLARITY_QDRANT_URL": URL, "CLARITY_ENGINE": "qdrant",
           "CLARITY_QDRANT_COLLECTION": f"clarity_ci_{uuid.uuid4().hex[:8]}"}
    if os.environ.get("QDRANT_SERVER_API_KEY"):
        env["CLARITY_QDRANT_API_KEY"] = os.environ["QDRANT_SERVER_API_KEY"]

    async def main() -> None:
        async with open_sessions(home, 2, env=env) as (a, b):
            stored = await a.call("store_memory", {"content": "The CI Qdrant server holds this team memory"})
            assert stored["stored"]
            hits = await b.call("retrieve_memory", {"query": "which server holds the team's memories"})
            assert [m["id"] for m in hits["memories"]] == [stored["id"]]
            st = await b.call("coordination_status", {})
            assert st["this_process"]["role"] == "direct" and st["owner"] is None

    run_async(main)
