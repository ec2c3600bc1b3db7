"""Shared pieces of the fuzz tests: hypothesis strategies for every tool's arguments (a mix of good
and hostile values), a digest of every memory in a store, and the readable-error check.

Strategies draw `Existing` placeholders that `resolve` turns into ids of the store at call time, so
updates, gets and deletes hit existing memories as well as missing and malformed ids.
`text(server=True)` leaves out lone surrogates: the MCP client cannot encode them, so they never
reach a server (the in-process tests send them).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

# ---- digest and error checks -----------------------------------------------------------------


def digest(memories: list[dict[str, Any]]) -> str:
    """A hash of every memory (id, content, type, importance, tags, metadata, context, timestamps,
    session), independent of order. `similarity` is left out (it is not stored)."""
    rows = sorted(orjson.dumps({k: v for k, v in mem.items() if k != "similarity"},
                               option=orjson.OPT_SORT_KEYS) for mem in memories)
    return hashlib.sha256(b"\n".join(rows)).hexdigest()


_INTERNALS = ("Traceback", "File \"", " object at 0x", "<class ")
# pydantic's own wording: an argument error must come in Clarity's words (clarity.memory.arguments.explain)
PYDANTIC_TEXT = ("errors.pydantic.dev", "validation error for", "Input should", "[type=", "Extra inputs",
                 "Field required", "List should", "String should", "Value error,")
_BARE_SDK_ERROR = re.compile(r"^Error executing tool \w+$")  # the MCP SDK's answer to a crash


def assert_readable(message: str) -> None:
    """An error message a person can read: non-empty, bounded, no traceback, Python object repr or
    pydantic text."""
    assert message.strip(), "empty error message"
    assert len(message) < 4000, f"error message of {len(message)} characters"
    for bad in _INTERNALS + PYDANTIC_TEXT:
        assert bad not in message, f"{bad!r} in error message: {message[:500]}"
    assert not _BARE_SDK_ERROR.match(message.strip()), f"a crash without a message: {message}"


class Cases:
    """Counts the cases run, per tool and outcome (accepted / rejected)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, tool: str, outcome: str) -> None:
        self.counts[f"{tool}:{outcome}"] += 1
        self.counts["total"] += 1

    def summary(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))


# ---- values ----------------------------------------------------------------------------------

HOSTILE_CHARS = "\x00\x01\x07\x0b\x1b\x7f\x85\u2028\ufeff\U0001f600é\n\t\r "


def text(server: bool = False, min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Short texts, often with control characters, emoji, and (in process) lone surrogates."""
    pool = [st.characters(codec="utf-8" if server else None), st.sampled_from(HOSTILE_CHARS)]
    if not server:
        pool.append(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()))
    chars = st.one_of(*pool)
    return st.text(chars, min_size=min_size, max_size=max_size)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` about seven times in eight, else `hostile`."""
    return st.integers(0, 7).flatmap(lambda i: hostile if i == 3 else valid)


WORDS = ["use", "postgres", "for", "the", "queue", "retry", "idempotent", "café", "🚀", "deploy", "on",
         "friday", "never", "naïve", "ünïcode"]


def nice_text(lines: bool = True) -> st.SearchStrategy[str]:
    """Texts that should be accepted as content (printable, not blank; tabs and newlines when
    `lines`, else one line, as names and keys must be)."""
    words = st.sampled_from(WORDS + (["\n", "\t"] if lines else []))
    return st.lists(words, min_size=1, max_size=8).map(" ".join)


def big_ints() -> st.SearchStrategy[int]:
    return st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**40)])


def weird_floats() -> st.SearchStrategy[float]:
    return st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324])


def json_values(server: bool = False, hostile: bool = True) -> st.SearchStrategy[Any]:
    """JSON values; with `hostile`, also huge ints, NaN (in process) and control characters."""
    leaves = [st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False,
              allow_infinity=False), nice_text()]
    keys = nice_text(lines=False)
    if hostile:
        leaves += [big_ints(), st.floats(allow_nan=not server, allow_infinity=not server), text(server)]
        keys = st.one_of(keys, text(server, max_size=8))
    return st.recursive(st.one_of(*leaves), lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=10)


def deep(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = {"k": value} if i % 2 else [value]
    return {"d": value}


def hostile_leaves(server: bool = False) -> st.SearchStrategy[Any]:
    """One value that must not be stored: huge ints, NaN/inf (in process: a JSON client turns them
    into null), control characters, lone surrogates (in process), nesting over the limit."""
    # a JSON-RPC message nested deeper than about 200 levels never reaches a tool: the MCP SDK cannot
    # parse it and the caller waits for its read timeout (outside Clarity), so servers get at most 150
    levels = st.integers(33, 150 if server else 400).map(deep)
    pool = [big_ints(), text(server, min_size=1, max_size=6).map(lambda t: t + "\x00"), levels]
    if not server:
        pool += [weird_floats().filter(lambda f: f != 0 and abs(f) > 1e300 or f != f),
                 st.just("a\udc80b"), st.just(("tuple",)), st.just(b"bytes")]
    return st.one_of(*pool)


def _inject(t: tuple[dict[str, Any], Any, str]) -> dict[str, Any]:
    base, leaf, key = t
    return {**base, key: leaf if len(key) % 2 else {"inner": [leaf]}}


def json_objects(server: bool = False) -> st.SearchStrategy[Any]:
    """Mostly good objects; else one with a hostile value somewhere, deep, huge, or not an object."""
    good = st.dictionaries(nice_text(lines=False), json_values(server, hostile=False), max_size=4)
    hostile = st.one_of(
        st.tuples(good, hostile_leaves(server), nice_text(lines=False)).map(_inject),
        st.tuples(good, hostile_leaves(server), nice_text(lines=False)).map(_inject),
        st.dictionaries(text(server, max_size=8), json_values(server), min_size=1, max_size=4),
        st.integers(29, 36).map(deep),
        st.just({"big": "x" * (70 * 1024)}),
        json_values(server),
    )
    return st.integers(0, 3).flatmap(lambda i: hostile if i == 2 else good)


def ints(lo: int, hi: int) -> st.SearchStrategy[Any]:
    hostile: st.SearchStrategy[Any] = st.one_of(
        st.integers(-5, 1200), big_ints(), st.sampled_from([10**9, 10**9 + 1, 2**31]), weird_floats(),
        st.sampled_from(["5", 5.0, True, None, [], {}]))
    return mostly(st.integers(lo, hi), hostile)


def floats(lo: float, hi: float) -> st.SearchStrategy[Any]:
    hostile = st.one_of(st.floats(-1.5, 1.5), weird_floats(), big_ints(), st.sampled_from(["0.5", True, None, [0.5]]))
    return mostly(st.floats(lo, hi), hostile)


def bools() -> st.SearchStrategy[Any]:
    return mostly(st.booleans(), st.sampled_from([1, 0, "yes", "false", None]))


SLUGS = ["note", "decision", "fact", "code-1", "x_y"]


def memory_types(server: bool = False) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(SLUGS), st.one_of(text(server, max_size=12), st.just("a" * 40),
                                                     st.sampled_from([None, 5, ["note"], "Note"])))


def tag_lists(server: bool = False) -> st.SearchStrategy[Any]:
    good = st.lists(st.sampled_from(["db", "ops", "ui", "prod", "seed", "naïve"]), max_size=4)
    bad_tag = st.one_of(text(server, max_size=70), st.just(""), st.just("t" * 65))
    hostile = st.one_of(st.lists(bad_tag, min_size=1, max_size=3), st.lists(st.just("t"), min_size=33, max_size=40),
                        st.sampled_from(["db", 5, [5], [None]]))
    return mostly(good, hostile)


def type_lists(server: bool = False) -> st.SearchStrategy[Any]:
    return mostly(st.lists(st.sampled_from(SLUGS), max_size=3),
                  st.one_of(st.lists(memory_types(server), min_size=1, max_size=3),
                            st.sampled_from(["note", 7, ["a" * 40]])))


@dataclass(frozen=True)
class Existing:
    """Stands for the id of a memory in the store when the call is made (`resolve` picks it), so
    the strategies do not depend on the store's state (hypothesis requires that)."""

    index: int
    upper: bool = False


def resolve(value: Any, ids: list[str]) -> Any:
    """`value` with every `Existing` replaced by an id of `ids` (a fresh UUID when there is none)."""
    if isinstance(value, Existing):
        mid = ids[value.index % len(ids)] if ids else str(uuid.uuid4())
        return mid.upper() if value.upper else mid
    if isinstance(value, dict):
        return {k: resolve(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids) for v in value]
    return value


def memory_ids(server: bool = False) -> st.SearchStrategy[Any]:
    """Existing ids, fresh UUIDs, and things that are not ids."""
    existing = st.builds(Existing, st.integers(0, 1000), st.booleans())
    junk = st.sampled_from(["", "nope", "0" * 36, "x" * 300, 5, None, ["a"]])
    return mostly(st.integers(0, 2).flatmap(lambda i: st.uuids().map(str) if i == 1 else existing),
                  st.one_of(junk, text(server, max_size=36)))


def contents(server: bool = False) -> st.SearchStrategy[Any]:
    return mostly(nice_text(), st.one_of(text(server, max_size=60), st.just("   "), st.just("y" * 40_000),
                                         st.sampled_from([5, None, ["a"]])))


# ---- arguments per operation ---------------------------------------------------------------------


def _maybe(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict holding a random subset of `fields`, one time in eight with an unknown key."""
    return st.tuples(st.fixed_dictionaries({}, optional=fields), st.integers(0, 7)).map(
        lambda t: {**t[0], "surprise": 1} if t[1] == 5 else t[0])


def args_for(op: str, server: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for service operation `op` (store, retrieve, list, get, update, delete, stats), with
    `Existing` placeholders for ids (see `resolve`)."""
    if op == "store":  # the service takes an id (the MCP tool makes one) and a session
        extra = {} if server else {"session": mostly(nice_text(lines=False), text(server, max_size=300))}
        base = _maybe(memory_type=memory_types(server), importance=floats(0, 1), tags=tag_lists(server),
                      metadata=json_objects(server), context=json_objects(server), **extra)
        args = st.tuples(base, contents(server)).map(lambda t: {**t[0], "content": t[1]})
        if server:
            return args
        new_ids = mostly(st.uuids().map(str), memory_ids(server))
        return st.tuples(args, new_ids).map(lambda t: {**t[0], "id": t[1]})
    if op == "retrieve":
        base = _maybe(limit=ints(1, 100), types=type_lists(server), tags=tag_lists(server),
                      min_similarity=floats(-1, 1), include_metadata=bools())
        return st.tuples(base, contents(server)).map(lambda t: {**t[0], "query": t[1]})
    if op == "list":
        return _maybe(limit=ints(1, 1000), offset=ints(0, 50), types=type_lists(server), tags=tag_lists(server),
                      include_content=bools())
    if op == "get":
        return st.one_of(memory_ids(server).map(lambda i: {"memory_id": i}), st.just({}))
    if op == "update":
        one = st.one_of(st.fixed_dictionaries({"content": contents(server)}),
                        st.fixed_dictionaries({"importance": floats(0, 1)}),
                        st.fixed_dictionaries({"tags": tag_lists(server)}))
        more = _maybe(content=contents(server), memory_type=memory_types(server), importance=floats(0, 1),
                      tags=tag_lists(server), metadata=json_objects(server), context=json_objects(server))
        updates = mostly(st.tuples(one, more).map(lambda t: {**t[0], **t[1]}),
                         st.sampled_from([None, [], "content", 5, {}]))
        return st.fixed_dictionaries({"memory_id": memory_ids(server), "updates": updates})
    if op == "delete":
        return mostly(st.fixed_dictionaries({"memory_ids": st.lists(memory_ids(server), min_size=1, max_size=4)}),
                      st.sampled_from([{"memory_ids": "abc"}, {"memory_ids": None}, {}, {"memory_ids": []}]))
    if op == "stats":
        return mostly(st.just({}), st.dictionaries(text(server, min_size=1, max_size=5), json_values(server),
                                                   min_size=1, max_size=2))
    raise ValueError(f"no strategy for {op}")


def valid_uuid(value: Any) -> str | None:
    """The canonical form of `value` if it is a UUID, else None."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None
