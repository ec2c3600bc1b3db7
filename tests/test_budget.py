"""budget.py: answers fitted into max_chars, with what was cut said and the rest reachable."""

from __future__ import annotations

import copy
import random
import re
import uuid
from typing import Any

from clarity.memory.budget import DEFAULT_MAX_CHARS, fit_memories, measure, page_memory

MARK = re.compile(r'\n\[\.\.\. trimmed: characters up to (\d+) of (\d+) shown; '
                  r'get_memory\(memory_id="([0-9a-f-]+)", offset=(\d+)\) returns the rest\]$')


def mem(content: str | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(uuid.uuid4()), "memory_type": "note", "importance": 0.5, "tags": [],
                           "created_at": "2026-11-21T10:00:00+00:00", "updated_at": "2026-11-21T10:00:00+00:00",
                           "content_hash": "0" * 64, "session": "s", "similarity": 0.5}
    if content is not None:
        out["content"] = content
    out.update(extra)
    return out


def noisy(n: int, rng: random.Random) -> str:
    # quotes, backslashes, newlines and control characters grow under JSON escaping; non-ASCII too
    return "".join(rng.choice('ab c"\\\n\x01é漢') for _ in range(n))


def test_small_answer_is_untouched() -> None:
    res = {"query": "q", "count": 2, "memories": [mem("short one"), mem("short two")]}
    before = copy.deepcopy(res)
    out = fit_memories(res, DEFAULT_MAX_CHARS)
    assert res == before  # the input is not modified
    assert out["memories"] == res["memories"]
    assert out["trimmed"] == [] and out["omitted"] == 0 and out["max_chars"] == DEFAULT_MAX_CHARS


def test_long_contents_are_cut_fairly_with_a_marker_naming_get_memory() -> None:
    short = mem("a short memory that must stay whole")
    longs = [mem(f"{i} " + "x" * 32_000) for i in range(4)]
    res = {"query": "q", "count": 5, "memories": [longs[0], short, *longs[1:]]}
    out = fit_memories(res, 20_000)
    assert measure(out) <= 20_000
    assert out["omitted"] == 0 and len(out["memories"]) == 5
    assert out["memories"][1]["content"] == short["content"]
    assert out["trimmed"] == [m["id"] for m in longs]
    shown = []
    for got, orig in zip([out["memories"][0], *out["memories"][2:]], longs, strict=True):
        m = MARK.search(got["content"])
        assert m is not None, got["content"][-200:]
        end, total, mid, offset = int(m[1]), int(m[2]), m[3], int(m[4])
        assert mid == orig["id"] and total == len(orig["content"]) and offset == end
        assert got["content"][:m.start()] == orig["content"][:end]
        shown.append(end)
    assert max(shown) - min(shown) <= 2  # equal shares for equally long contents
    assert min(shown) > 3000  # the budget is used, not wasted


def test_any_answer_fits_and_keeps_at_least_one_memory() -> None:
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(1, 12)
        mems = [mem(noisy(rng.randint(0, 33_000), rng), metadata={"k": "v" * rng.randint(0, 30_000)},
                    context={}) for _ in range(n)]
        cap = rng.choice([1000, 4000, 20_000, 100_000])
        out = fit_memories({"query": "q", "count": n, "memories": mems}, cap)
        assert measure(out) <= cap, (cap, measure(out))
        assert 1 <= len(out["memories"]) and len(out["memories"]) + out["omitted"] == n
        assert [m["id"] for m in out["memories"]] == [m["id"] for m in mems[:len(out["memories"])]]


def test_list_without_contents_leaves_out_the_tail_and_says_how_many() -> None:
    mems = [mem(None) for _ in range(1000)]
    out = fit_memories({"total": 1000, "offset": 0, "limit": 1000, "memories": mems}, DEFAULT_MAX_CHARS)
    assert measure(out) <= DEFAULT_MAX_CHARS
    kept = len(out["memories"])
    assert 10 < kept < 1000 and out["omitted"] == 1000 - kept and out["trimmed"] == []


def test_huge_metadata_is_replaced_by_a_stub_naming_its_size() -> None:
    big = mem("content", metadata={"blob": "m" * 60_000})
    out = fit_memories({"query": "q", "count": 1, "memories": [big]}, DEFAULT_MAX_CHARS)
    assert measure(out) <= DEFAULT_MAX_CHARS
    assert out["memories"][0]["content"] == "content"
    assert "_trimmed" in out["memories"][0]["metadata"]
    assert str(measure(big["metadata"])) in out["memories"][0]["metadata"]["_trimmed"]


def test_paging_a_32_kib_memory_returns_all_of_it_in_pieces_that_fit() -> None:
    rng = random.Random(3)
    whole = noisy(32 * 1024, rng)
    m = mem(whole, metadata={"a": 1}, context={"file": "x.py"})
    pieces, offset, pages = [], 0, 0
    while True:
        page = page_memory(m, DEFAULT_MAX_CHARS, offset)
        pages += 1
        assert measure(page) <= DEFAULT_MAX_CHARS
        assert page["content_offset"] == offset and page["content_chars"] == len(whole)
        assert page["metadata"] == {"a": 1}
        text = page["content"]
        if page["next_offset"] is None:
            pieces.append(text)
            break
        match = MARK.search(text)
        assert match is not None and int(match[4]) == page["next_offset"] > offset
        pieces.append(text[:match.start()])
        offset = page["next_offset"]
    assert "".join(pieces) == whole
    assert pages >= 2


def test_a_memory_that_fits_is_returned_whole_and_a_32_kib_one_in_two_pages() -> None:
    m = mem("x" * 19_000)
    page = page_memory(m, DEFAULT_MAX_CHARS)
    assert page["content"] == m["content"] and page["next_offset"] is None
    m = mem("y" * 32 * 1024)
    first = page_memory(m, DEFAULT_MAX_CHARS)
    second = page_memory(m, DEFAULT_MAX_CHARS, first["next_offset"])
    assert second["next_offset"] is None
    assert first["content"][:first["next_offset"]] + second["content"] == m["content"]
