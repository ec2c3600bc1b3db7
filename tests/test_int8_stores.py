"""Switching the default model's precision keeps existing stores valid, without re-embedding: memories
stored by a float-precision `clarity serve` are found by an int8 one (the default) as they were, through
real servers and a real MCP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import open_sessions, run_async

MEMORIES = [
    "The API server listens on port 8080 behind nginx",
    "We use PostgreSQL 15 with pgbouncer for connection pooling",
    "Makefiles must be indented with tabs, not spaces",
    "Deployments go out every Tuesday after the standup",
    "Alice prefers pytest over unittest for new tests",
    "The login page times out after 15 minutes of inactivity",
    "Redis is the broker of the Dramatiq background workers",
    "Front-end code is TypeScript and React, built with Vite",
    "Database migrations are written with Alembic and reviewed by two people",
    "The staging cluster runs on Kubernetes, synced by Argo CD from the Helm chart",
    "Secrets live in Vault; never commit a .env file",
    "Error reports go to Sentry with the release tag set by CI",
]
QUERIES = [
    "which port does the api run on", "what database and connection pool do we use",
    "indentation rules for make files", "when do we deploy to production", "which test framework should new tests use",
    "session expiry for signed in users", "what queues background jobs", "what is the web app written in",
    "how are schema changes made", "how is staging deployed", "where do we keep credentials",
    "where do exceptions get reported",
]


async def _ask(home: Path, env: dict[str, str], store: bool) -> tuple[dict[str, str], list[list[tuple[str, float]]]]:
    async with open_sessions(home, 1, env=env) as (s,):
        ids: dict[str, str] = {}
        if store:
            for text in MEMORIES:
                r: dict[str, Any] = await s.call("store_memory", {"content": text, "memory_type": "fact"})
                ids[r["id"]] = text
        hits = []
        for q in QUERIES:
            got = await s.call("retrieve_memory", {"query": q, "limit": 3, "min_similarity": -1, "mode": "semantic"})
            hits.append([(m["id"], float(m["similarity"]))
                         for m in got["memories"]])
        return ids, hits


def test_float_vectors_are_found_by_int8_queries_as_before(home: Path) -> None:
    ids, before = run_async(_ask, home, {"CLARITY_MODEL_PRECISION": "float"}, True)
    assert len(ids) == len(MEMORIES)
    _none, after = run_async(_ask, home, {}, False)  # the default: int8
    for q, b, a in zip(QUERIES, before, after, strict=True):
        assert b[0][0] == a[0][0], (q, ids[b[0][0]], ids[a[0][0]])  # the same best memory
        assert ids[a[0][0]] == MEMORIES[QUERIES.index(q)], q  # and the right one
        shared = dict(b).keys() & dict(a).keys()
        assert all(abs(dict(b)[i] - dict(a)[i]) < 0.05 for i in shared), (q, b, a)  # scores within int8 noise
        assert b[0][1] - max([s for _i, s in b[1:]] + [0.0]) > 0.1, (q, b)  # the best stood out before
        assert a[0][1] - max([s for _i, s in a[1:]] + [0.0]) > 0.1, (q, a)  # and still does
    top_before = [h[0][1] for h in before]
    top_after = [h[0][1] for h in after]
    assert top_before != top_after  # the queries really ran in the other precision
