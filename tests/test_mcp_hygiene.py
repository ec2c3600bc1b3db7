"""MCP hygiene through a real `clarity serve`: annotations, output schemas, instructions, answers that
fit max_chars (and the rest reachable with get_memory), the clarity://context resource, the
review_memories prompt, and `clarity context` ranking the same way."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import cli, run_async

MARK = re.compile(r'\n\[\.\.\. trimmed: characters up to (\d+) of (\d+) shown; '
                  r'get_memory\(memory_id="([0-9a-f-]+)", offset=(\d+)\) returns the rest\]$')
READS = {"retrieve_memory", "list_memories", "get_memory", "memory_stats", "coordination_status"}


def test_tools_are_annotated_keep_output_schemas_and_the_server_says_when_to_store(home: Path) -> None:
    async def scenario() -> None:
        async with SessionClient(home) as s:
            assert s.client is not None
            tools = {t.name: t for t in (await s.client.list_tools()).tools}
            assert len(tools) == 8
            for name, t in tools.items():
                a = t.annotations
                assert a is not None, name
                assert a.open_world_hint is False, name
                assert a.title, name
                assert t.output_schema is not None, name
                assert a.read_only_hint is (name in READS), name
                assert a.destructive_hint is (name in ("delete_memory", "update_memory")), name
                # the input schema is Clarity's model: unknown keys refused, exact types
                assert t.input_schema["additionalProperties"] is False, name
            assert tools["delete_memory"].annotations.idempotent_hint is True  # type: ignore[union-attr]
            assert tools["store_memory"].annotations.idempotent_hint is True  # type: ignore[union-attr]
            for name in ("retrieve_memory", "list_memories", "get_memory"):
                assert "max_chars" in tools[name].input_schema["properties"]
                assert {"max_chars", "trimmed", "omitted"} <= set(tools[name].output_schema["properties"]) \
                    or name == "get_memory"
            assert {"next_offset", "content_chars"} <= set(tools["get_memory"].output_schema["properties"])
            text = s.client.instructions or ""
            assert "store_memory" in text and "retrieve_memory" in text and "clarity://context" in text
            assert "When to store" in text and "When to search" in text

    run_async(scenario)


def sizes(res: Any) -> tuple[int, int]:
    """(characters of the text block, characters of the structured content as compact JSON)."""
    text = "".join(getattr(c, "text", "") for c in res.content)
    return len(text), len(orjson.dumps(res.structured_content).decode())


def test_answers_fit_max_chars_and_get_memory_reads_on(home: Path) -> None:
    bodies = [f"Design note {i} about the ingest pipeline: " + (f"stage {i} detail \"quoted\"\n" * 1400)[:32_000]
              for i in range(6)]

    async def scenario() -> None:
        async with SessionClient(home) as s:
            assert s.client is not None
            ids = []
            for b in bodies:
                res = await s.client.call_tool("store_memory", {"content": b})
                assert not res.is_error and max(sizes(res)) <= 20_000  # the echo is cut too
                ids.append(res.structured_content["id"])  # type: ignore[index]
            res = await s.client.call_tool("retrieve_memory", {"query": "ingest pipeline design note",
                                                               "limit": 6, "min_similarity": -1})
            assert max(sizes(res)) <= 20_000, sizes(res)
            got = res.structured_content
            assert got is not None and got["count"] == 6 and set(got["trimmed"]) == set(ids)
            first = got["memories"][0]
            m = MARK.search(first["content"])
            assert m is not None and m[3] == first["id"]
            # read the rest with get_memory from the offset the marker names
            whole = bodies[ids.index(first["id"])]
            pieces, offset = [first["content"][:m.start()]], int(m[4])
            while offset is not None:
                page = await s.client.call_tool("get_memory", {"memory_id": first["id"], "offset": offset})
                assert not page.is_error and max(sizes(page)) <= 20_000
                p = page.structured_content
                assert p is not None and p["content_chars"] == len(whole)
                nxt = p["next_offset"]
                pieces.append(p["content"] if nxt is None else p["content"][:nxt - offset])
                offset = nxt
            assert "".join(pieces) == whole
            # get_memory of a 32 KiB memory from the start stays within the default too
            res = await s.client.call_tool("get_memory", {"memory_id": ids[0]})
            assert max(sizes(res)) <= 20_000 and res.structured_content["next_offset"]  # type: ignore[index]
            # list with contents: cut contents, and the memories that did not fit are counted
            res = await s.client.call_tool("list_memories", {"include_content": True, "limit": 100,
                                                             "max_chars": 1000})
            lst = res.structured_content
            assert lst is not None and max(sizes(res)) <= 1000
            assert lst["omitted"] + len(lst["memories"]) == 6 and lst["omitted"] > 0
            big = await s.call("retrieve_memory", {"query": "ingest", "limit": 2, "min_similarity": -1,
                                                   "max_chars": 100_000})
            assert big["trimmed"] == [] and [x["content"] for x in big["memories"]] == \
                [bodies[ids.index(x["id"])] for x in big["memories"]]
            for bad in ({"max_chars": 10}, {"max_chars": 10**7}):
                try:
                    await s.call("retrieve_memory", {"query": "x", **bad})
                except ToolCallError as e:
                    assert "max_chars" in e.message
                else:
                    raise AssertionError(f"{bad} was accepted")
            try:
                await s.call("get_memory", {"memory_id": ids[0], "offset": 10**6})
            except ToolCallError as e:
                assert "past the end" in e.message
            else:
                raise AssertionError("an offset past the end was accepted")

    run_async(scenario)


def _memory(content: str, importance: float, age_days: float, mtype: str = "note") -> dict[str, Any]:
    t = (datetime.now(UTC) - timedelta(days=age_days)).isoformat()
    return {"id": str(uuid.uuid4()), "content": content, "memory_type": mtype, "importance": importance,
            "tags": [], "created_at": t, "updated_at": t}


# expected order: score = 0.6 * importance + 0.4 * 0.5 ** (age_days / 14)
RANKED = [
    _memory("Fresh and important: deploys go through the release train on Tuesdays", 0.9, 0.1, "decision"),
    _memory("Fresh ordinary note: the staging database was reset today", 0.5, 0.2),
    _memory("Old but critical: never run migrations by hand on production", 1.0, 60, "decision"),
    _memory("Fresh trivial: the office coffee machine is fixed", 0.2, 0.05),
    _memory("Old and trivial: a typo in the README was fixed", 0.1, 90),
]


def test_context_resource_prompt_and_cli_rank_the_same_way(home: Path, tmp_path: Path) -> None:
    dump = tmp_path / "old.json"
    dump.write_bytes(orjson.dumps({"memories": list(reversed(RANKED))}))
    cli(home, "import", str(dump))

    def order(text: str) -> list[int]:
        pos = [(text.find(m["content"]), i) for i, m in enumerate(RANKED) if m["content"] in text]
        return [i for _p, i in sorted(pos)]

    async def scenario() -> None:
        async with SessionClient(home) as s:
            assert s.client is not None
            res = await s.client.read_resource("clarity://context")
            text = res.contents[0].text  # type: ignore[union-attr]
            assert order(text) == [0, 1, 2, 3, 4]
            assert "5 most useful of 5 memories" in text
            prompt = await s.client.get_prompt("review_memories", {"limit": "2"})
            body = prompt.messages[0].content.text  # type: ignore[union-attr]
            assert order(body) == [0, 1]
            assert "update_memory" in body and "delete_memory" in body
            await s.call("list_memories", {})  # this session owns the store: the CLI forwards to it
            out = cli(home, "context", "--limit", "3").stdout
            assert order(out) == [0, 1, 2]
            js = orjson.loads(cli(home, "context", "--limit", "3", "--json").stdout)
            assert [m["id"] for m in js["memories"]] == [m["id"] for m in RANKED[:3]]
            assert js["memories"][0]["score"] > js["memories"][1]["score"] > js["memories"][2]["score"]

    run_async(scenario)


def test_context_of_an_empty_store_says_so_and_long_contents_are_cut(home: Path) -> None:
    out = cli(home, "context").stdout
    assert "No memories stored yet" in out
    cli(home, "store", "long " + "word " * 6000, "--importance", "0.9")
    out = cli(home, "context", "--max-chars", "1500").stdout
    assert len(out) <= 1600 and "[... cut; get_memory for the rest]" in out
    bad = cli(home, "context", "--limit", "0", check=False)
    assert bad.returncode == 2 and "--limit" in bad.stderr
