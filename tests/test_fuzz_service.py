"""Property tests of every service operation behind the MCP tools, in process: the real engine on a
tmp home and the real embedding model (one model shared by every case).

For each case: a rejected call raises InvalidArgument or NotFound with a readable message and
leaves every memory as it was (digest of the export); an accepted call does what it says (checked
against the store's contents before the call). Any other exception fails the test. The number of
cases run is printed and asserted (CLARITY_FUZZ_SCALE multiplies it; 1 by default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarity.config import load_settings
from clarity.errors import ClarityError, InvalidArgument, NotFound
from clarity.memory.model import new_id
from clarity.memory.service import MemoryService, build_service
from tests.fuzz_support import Cases, args_for, assert_readable, digest, resolve, valid_uuid

SCALE = float(os.environ.get("CLARITY_FUZZ_SCALE", "1"))
EXAMPLES = {"store": 400, "retrieve": 250, "list": 350, "get": 250, "update": 450, "delete": 200, "stats": 100}

STRATEGIES = {op: args_for(op) for op in EXAMPLES}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryService]:
    service = build_service(load_settings(tmp_path_factory.mktemp("fuzz") / "home"))
    yield service
    service.close()


def memories(svc: MemoryService) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in svc.execute("export", {})["memories"]}


def seed(svc: MemoryService, n: int = 6) -> None:
    for i in range(n):
        svc.execute("store", {"id": new_id(), "content": f"seed memory {i} {new_id()}", "tags": ["seed", f"s{i}"],
                              "memory_type": "fact" if i % 2 else "note", "metadata": {"i": i}})


def matches(mem: dict[str, Any], args: dict[str, Any]) -> bool:
    types, tags = args.get("types"), args.get("tags")
    return (not types or mem["memory_type"] in types) and (not tags or bool(set(tags) & set(mem["tags"])))


def check_accepted(svc: MemoryService, op: str, args: dict[str, Any], res: dict[str, Any],
                   before: dict[str, dict[str, Any]]) -> None:
    after = memories(svc)
    if op in ("retrieve", "list", "get", "stats"):
        assert digest(list(after.values())) == digest(list(before.values())), f"{op} changed the store"
    if op == "store":
        got = after[res["id"]]
        assert got["content"] == args["content"]
        if res["duplicate_of"] is None and res["id"] not in before:
            assert res["id"] == valid_uuid(args["id"])
            assert got["tags"] == args.get("tags", []) and got["metadata"] == args.get("metadata", {})
            assert set(after) == set(before) | {res["id"]}
        else:
            assert after == before
    elif op == "retrieve":
        assert res["count"] == len(res["memories"]) <= args.get("limit", 5)
        if res["mode"] == "semantic":  # in hybrid a keyword match passes the cosine floor; keyword has none
            assert all(m["similarity"] >= res["min_similarity"] - 1e-6 for m in res["memories"])
        assert all(matches(before[m["id"]], args) for m in res["memories"])
    elif op == "list":
        expected = sorted((m for m in before.values() if matches(m, args)),
                          key=lambda m: (m["created_at"], m["id"]), reverse=True)
        offset, limit = args.get("offset", 0), args.get("limit", 20)
        assert res["total"] == len(expected)
        assert [m["id"] for m in res["memories"]] == [m["id"] for m in expected[offset:offset + limit]]
    elif op == "get":
        assert res["id"] == valid_uuid(args["memory_id"]) and res["content"] == before[res["id"]]["content"]
    elif op == "update":
        mid = res["id"]
        changed = {k: v for k, v in args["updates"].items() if v is not None}
        if "importance" in changed:  # kept to 6 decimals (see clarity.memory.model.Importance)
            changed["importance"] = round(changed["importance"], 6)
        assert sorted(changed) == res["updated_fields"]
        assert all(after[mid][k] == v for k, v in changed.items())
        assert {k: v for k, v in after.items() if k != mid} == {k: v for k, v in before.items() if k != mid}
    elif op == "delete":
        gone = set(res["deleted"])
        assert gone == {valid_uuid(i) for i in args["memory_ids"]} & set(before)
        assert after == {k: v for k, v in before.items() if k not in gone}
    elif op == "stats":
        assert res["total"] == len(before) == sum(res["by_type"].values())


def fuzz(svc: MemoryService, op: str, cases: Cases) -> None:
    @settings(max_examples=max(1, int(EXAMPLES[op] * SCALE)), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data: st.DataObject) -> None:
        before = memories(svc)
        if len(before) < 3:
            seed(svc)
            before = memories(svc)
        args = resolve(data.draw(STRATEGIES[op], label="args"), sorted(before))
        try:
            res = svc.execute(op, args)
        except ClarityError as e:
            cases.add(op, "rejected")
            assert isinstance(e, InvalidArgument | NotFound), f"{type(e).__name__}: {e.message}"
            assert_readable(e.message)
            assert memories(svc) == before, f"rejected {op} changed the store"
            return
        cases.add(op, "accepted")
        check_accepted(svc, op, args, res, before)

    case()


def test_fuzz_every_service_operation(svc: MemoryService, capsys: pytest.CaptureFixture[str]) -> None:
    cases = Cases()
    for op in EXAMPLES:
        fuzz(svc, op, cases)
    with capsys.disabled():
        print(f"\nin-process fuzz cases: {cases.summary()}")
    assert cases.counts["total"] >= 0.9 * sum(EXAMPLES.values()) * SCALE
    for op in EXAMPLES:  # the strategies reach both outcomes of every operation
        assert cases.counts[f"{op}:rejected"] > 0, op
        assert cases.counts[f"{op}:accepted"] > 0, op


def test_memory_survives_reopen_after_fuzz(svc: MemoryService, tmp_path: Path) -> None:
    """After the fuzz, the store still opens and answers (nothing the fuzz stored broke it)."""
    before = memories(svc)
    svc.close()
    after = memories(svc)
    assert digest(list(after.values())) == digest(list(before.values()))
