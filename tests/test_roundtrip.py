"""Every value of a memory comes back exactly as it was stored, whichever path wrote it into the Edge shard:
backup then restore, the migration of a qdrant-client store, an index build (finding 4 of issue 16).

The memories carry what is hardest to keep: random floats over the whole double range (Edge parses payload
floats inexactly, about one in nine came back an ulp off), -0.0, the 64-bit integer edges, astral-plane
characters and combining marks, nesting (lists of dicts of lists), empty containers, in `metadata` and
`context`; `importance` at its 6 decimals. Compared value for value, types included (1 is not 1.0, -0.0
is not 0.0).
"""

from __future__ import annotations

import math
import random
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarity.config import DEFAULT_MODEL, load_settings
from clarity.engines.backup import write_backup
from clarity.engines.base import Point
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.engines.edge.migrate import migrate_if_needed
from clarity.memory import model as m
from clarity.memory import records
from clarity.memory.arguments import parse
from clarity.memory.restore import restore_into_edge

DIM = 384
INT_EDGES = [-(2**63), 2**63 - 1, -(2**63) + 1, 2**63 - 2, 0, -1, 1, 2**53 + 1, -(2**53) - 1]
TEXTS = ["", "plain", "\U0001F600 astral \U0001D518\U0001D52B", "e\u0301 combining a\u0308\u0323",
         "\u0915\u094D\u0937 \u200d zwj", "\uFEFF bom", "tab\tnew\nline\rcr", "\U0010FFFF last", "quote \" \\ /"]
KEYS = [t for t in TEXTS if not any(c in t for c in "\t\n\r")]  # a key is one line


def a_float(rng: random.Random) -> float:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.random()
    if kind == 1:
        return rng.uniform(-1e6, 1e6)
    if kind == 2:
        return math.copysign(10 ** rng.uniform(-300, 300), rng.random() - 0.5)
    if kind == 3:
        return rng.choice([5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.1, 1 / 3,
                           0.09925434121760651, 9007199254740993.0, 1e-7, 123456789.123456789])
    if kind == 4:
        return struct_float(rng)
    return rng.gauss(0, 1)


def struct_float(rng: random.Random) -> float:
    """Any finite double, from random bits."""
    import struct

    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def a_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 5 else 6)
    if kind == 0:
        return a_float(rng)
    if kind == 1:
        return rng.choice(INT_EDGES + [rng.randint(-(2**63), 2**63 - 1)])
    if kind == 2:
        return rng.choice(TEXTS)
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return rng.choice([[], {}, "", [[]], {"": {}}])
    if kind == 5:
        return [a_float(rng) for _ in range(rng.randrange(1, 6))]
    if kind == 6:
        return [a_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 7:
        return [{"k": [a_value(rng, depth + 1)], "l": [[a_float(rng)], {}]}]
    return {rng.choice(KEYS) + str(i): a_value(rng, depth + 1) for i in range(rng.randrange(0, 4))}


def an_object(rng: random.Random) -> dict[str, Any]:
    return {"floats": [a_float(rng) for _ in range(12)], "edges": INT_EDGES, "texts": TEXTS,
            "nest": [{"a": [a_float(rng), {"b": [[], {}, [a_float(rng)]]}]}, []],
            "empty": {"list": [], "dict": {}, "text": ""}, "neg_zero": -0.0,
            "random": a_value(rng), "\U0001F600 key e\u0301": a_value(rng)}


def unit_vector(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def memories(n: int, seed: int = 7) -> list[Point]:
    """`n` valid memories (parsed as a store parses them), with hard values in metadata and context."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        req = parse(m.StoreRequest, {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "content": f"round trip memory {i} {rng.choice(TEXTS)}".strip() + ".",
            "memory_type": rng.choice(["note", "fact", "decision"]), "importance": round(rng.random(), 6),
            "tags": [f"t{i % 4}", "\U0001F600"], "metadata": an_object(rng), "context": an_object(rng),
            "session": "s\u0301"})
        ts = (start + timedelta(seconds=i, microseconds=i)).isoformat(timespec="microseconds")
        payload = records.new_payload(req, m.content_hash(req.content), ts)
        out.append(Point(id=req.id, payload=payload, vector=unit_vector(rng)))
    return out


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where `a` and `b` differ, types included (1 vs 1.0, 0.0 vs -0.0); [] when they are the same."""
    if type(a) is not type(b):
        return [f"{where}: {a!r} ({type(a).__name__}) -> {b!r} ({type(b).__name__})"]
    if isinstance(a, float):
        if a != b or math.copysign(1.0, a) != math.copysign(1.0, b):
            return [f"{where}: {a!r} -> {b!r}"]
        return []
    if isinstance(a, dict):
        if list(a) != list(b):
            return [f"{where}: keys {list(a)} -> {list(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items -> {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} -> {b!r}"]


def assert_same_store(engine: EdgeEngine, points: list[Point], what: str) -> None:
    got = {p.id: p for p in engine.retrieve([p.id for p in points], with_vectors=True)}
    assert len(got) == len(points) == engine.count()
    diffs = [d for p in points for d in differences(p.payload, got[p.id].payload, p.id[:8])]
    assert not diffs, f"{len(diffs)} values changed by {what}: " + "; ".join(diffs[:10])
    for p in points:
        stored = got[p.id].vector
        assert stored is not None and len(stored) == DIM
        assert max(abs(x - y) for x, y in zip(p.vector or [], stored, strict=True)) < 1e-6


def _engine(home: Path, index_threshold: int = 0) -> EdgeEngine:
    engine = EdgeEngine(edge_dir(home / "qdrant"), flush_interval_s=0, index_threshold=index_threshold)
    engine.ensure_collection(DIM)
    return engine


def test_backup_then_restore_keeps_every_value(home: Path) -> None:
    points = memories(40)
    engine = _engine(home)
    try:
        engine.upsert(points)
        assert_same_store(engine, points, "the engine itself")
        file, count = write_backup(engine, home / "backups", DEFAULT_MODEL, DIM)
    finally:
        engine.close()
    assert count == len(points)
    assert restore_into_edge(file, home / "qdrant", DEFAULT_MODEL)["restored"] == len(points)
    engine = _engine(home)
    try:
        assert_same_store(engine, points, "backup then restore")
        again, _ = write_backup(engine, home / "backups", DEFAULT_MODEL, DIM)
    finally:
        engine.close()
    assert again.read_bytes().splitlines()[1:] == file.read_bytes().splitlines()[1:]  # the same file again


def test_the_migration_keeps_every_value(home: Path) -> None:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    points = memories(40, seed=8)
    settings = load_settings(home)
    client = QdrantClient(path=str(settings.qdrant_path))
    client.create_collection("memories", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE))
    client.upsert("memories", [qm.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points])
    client.close()
    res = migrate_if_needed(settings, DIM, nullcontext)
    assert res is not None and res["count"] == len(points)
    engine = _engine(home)
    try:
        assert_same_store(engine, points, "the migration")
    finally:
        engine.close()


def test_an_index_build_keeps_every_value(home: Path) -> None:
    points = memories(40, seed=9)
    engine = _engine(home)
    try:
        engine.upsert(points)
        folder = engine.index_state()["folder"]
        assert engine.build_index(timeout_s=120)
        assert engine.index_state()["folder"] != folder
        assert_same_store(engine, points, "an index build")
    finally:
        engine.close()
    engine = _engine(home)  # and as the next owner loads the built generation
    try:
        assert_same_store(engine, points, "an index build, reopened")
    finally:
        engine.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8), children, max_size=4),
    max_leaves=20)


def test_any_metadata_comes_back_exactly(tmp_path: Path) -> None:
    engine = EdgeEngine(tmp_path / "edge", flush_interval_s=0)
    engine.ensure_collection(DIM)
    rng = random.Random(3)
    vector = unit_vector(rng)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(meta=st.dictionaries(st.text(max_size=6).filter(lambda s: s.isprintable()), JSON, max_size=5),
           ctx=JSON)
    def check(meta: dict[str, Any], ctx: Any) -> None:
        payload = {"content": "x", "memory_type": "note", "metadata": meta, "context": {"v": ctx}}
        pid = str(uuid.uuid4())
        engine.upsert([Point(pid, payload, vector)])
        (got,) = engine.retrieve([pid])
        assert not differences(payload, got.payload)

    try:
        check()
    finally:
        engine.close()
