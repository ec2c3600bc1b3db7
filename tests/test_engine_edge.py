"""The Edge engine: O(limit) list/stats/dedup, paging order, reopen, the WAL fence, group commit."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clarity.config import load_settings
from clarity.engines.base import Point, iter_all
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.engines.edge.group_commit import GroupCommit
from clarity.memory.service import MemoryService

DIM = 8


def vec(rng: random.Random) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(DIM)]


def make_points(n: int, seed: int = 1) -> list[Point]:
    rng = random.Random(seed)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    pts = []
    for i in range(n):
        ts = (base + timedelta(seconds=i // 3)).isoformat(timespec="microseconds")  # triples share a ts
        pts.append(Point(str(uuid.UUID(int=rng.getrandbits(128), version=4)), {
            "content": f"memory {i}", "memory_type": ["note", "fact", "decision"][i % 3],
            "tags": ["even"] if i % 2 == 0 else ["odd", "x"], "created_at": ts, "updated_at": ts,
            "content_hash": f"h{i}", "session": "s"}, vec(rng)))
    return pts


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    e = EdgeEngine(tmp_path / "edge", flush_interval_s=0.05)
    e.ensure_collection(DIM)
    yield e
    e.close()


def expected_order(points: list[Point]) -> list[str]:
    return [p.id for p in sorted(points, key=lambda p: (p.payload["created_at"], p.id), reverse=True)]


def test_newest_pages_in_order_with_ties_and_filters(engine: EdgeEngine) -> None:
    pts = make_points(100)
    engine.upsert(pts)
    want = expected_order(pts)
    got = [p.id for off in range(0, 100, 7) for p in engine.newest(None, off, 7)]
    assert got == want
    facts = [p for p in pts if p.payload["memory_type"] == "fact"]
    assert [p.id for p in engine.newest({"memory_type": ["fact"]}, 3, 5)] == expected_order(facts)[3:8]
    odd = [p for p in pts if "odd" in p.payload["tags"]]
    assert [p.id for p in engine.newest({"tags": ["x"]}, 0, 100)] == expected_order(odd)
    assert engine.newest(None, 200, 5) == []


def test_count_facet_find_retrieve_delete(engine: EdgeEngine) -> None:
    pts = make_points(30)
    engine.upsert(pts)
    assert engine.count() == 30
    assert engine.count({"tags": ["even"]}) == 15
    assert engine.facet("memory_type") == {"note": 10, "fact": 10, "decision": 10}
    hit = engine.find({"memory_type": "fact", "content_hash": "h4"})
    assert [p.id for p in hit] == [pts[4].id]
    assert engine.find({"memory_type": "note", "content_hash": "h4"}) == []
    got = engine.retrieve([pts[0].id, str(uuid.uuid4())], with_vectors=True)
    assert len(got) == 1 and got[0].payload == pts[0].payload and got[0].vector is not None
    engine.delete([pts[4].id])
    assert engine.find({"memory_type": "fact", "content_hash": "h4"}) == []
    assert engine.facet("memory_type")["fact"] == 9
    paged = [p.id for page in iter_all(engine, page_size=7) for p in page]
    assert sorted(paged) == sorted(p.id for p in pts if p.id != pts[4].id)


def test_search_scores_and_threshold(engine: EdgeEngine) -> None:
    pts = make_points(20)
    engine.upsert(pts)
    assert pts[5].vector is not None
    hits = engine.search(pts[5].vector, 3)
    assert hits[0].id == pts[5].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.score is not None and h.score >= 0.99 for h in engine.search(pts[5].vector, 3, None, 0.99))
    only = engine.search(pts[5].vector, 5, {"memory_type": ["note"]})
    assert only and all(h.payload["memory_type"] == "note" for h in only)


def test_reopen_keeps_data_and_second_process_is_fenced(tmp_path: Path) -> None:
    e = EdgeEngine(tmp_path / "edge")
    e.ensure_collection(DIM)
    e.upsert(make_points(10))
    code = ("import sys\nfrom pathlib import Path\nfrom clarity.errors import EngineLocked\n"
            "from clarity.engines.edge.engine import EdgeEngine\n"
            f"e = EdgeEngine(Path({str(tmp_path / 'edge')!r}))\n"
            "try:\n    e.ensure_collection(8)\nexcept EngineLocked:\n    sys.exit(3)\nsys.exit(0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    e.close()
    e2 = EdgeEngine(tmp_path / "edge")
    e2.ensure_collection(DIM)
    assert e2.count() == 10
    e2.close()
    with pytest.raises(ValueError, match="does not match"):
        EdgeEngine(tmp_path / "edge").ensure_collection(16)


class CountingEngine:
    """Wraps an engine and counts the points its calls hand back (what the service had to read)."""

    def __init__(self, inner: EdgeEngine) -> None:
        self.inner = inner
        self.read = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def wrapped(*a: Any, **kw: Any) -> Any:
            out = attr(*a, **kw)
            if isinstance(out, list):
                self.read += len(out)
            elif isinstance(out, tuple) and out and isinstance(out[0], list):
                self.read += len(out[0])
            return out
        return wrapped


class FixedEmbedder:
    model_name = "test"
    dim = DIM

    def embed_one(self, text: str) -> list[float]:
        return vec(random.Random(text))

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_one(t) for t in texts]


def test_service_reads_o_limit_points(tmp_path: Path) -> None:
    """list, stats and store (dedup) read O(limit) points, not the whole store (the old service
    scrolled everything for each of them)."""
    settings = load_settings(tmp_path / "home")
    inner = EdgeEngine(edge_dir(settings.qdrant_path))
    counting = CountingEngine(inner)
    svc = MemoryService(settings, lambda: counting, FixedEmbedder())  # type: ignore[arg-type, return-value]
    inner.ensure_collection(DIM)
    inner.upsert(make_points(500))
    counting.read = 0
    res = svc.execute("list", {"limit": 5, "offset": 10})
    assert res["total"] == 500 and len(res["memories"]) == 5
    assert counting.read <= 20
    counting.read = 0
    st = svc.execute("stats", {})
    assert st["total"] == 500 and sum(st["by_type"].values()) == 500
    assert counting.read == 0
    counting.read = 0
    svc.execute("store", {"id": str(uuid.uuid4()), "content": "fresh text"})
    dup = svc.execute("store", {"id": str(uuid.uuid4()), "content": "fresh text"})
    assert dup["stored"] is False
    assert counting.read <= 4
    svc.close()


def test_group_commit_covers_every_caller() -> None:
    """Every commit() returns only after a flush that started after it was called; concurrent
    callers share flushes."""
    starts: list[float] = []
    ends: list[float] = []

    def flush() -> None:
        starts.append(time.monotonic())
        time.sleep(0.02)
        ends.append(time.monotonic())

    g = GroupCommit(flush)
    calls: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            t = time.monotonic()
            g.commit()
            with lock:
                calls.append((t, time.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(calls) == 40
    for called, returned in calls:
        assert any(called <= s and e <= returned for s, e in zip(starts, ends, strict=True))
    assert g.flushes < 40


def test_group_commit_error_reaches_the_waiter() -> None:
    def flush() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        GroupCommit(flush).commit()


def test_payload_values_come_back_exactly(tmp_path: Path) -> None:
    """Regression (found by the fuzz): Edge parsed payload floats inexactly (about 1 in 9 random floats
    came back one ulp off), so metadata changed on the way through. Metadata and context now round-trip
    bit for bit; importance is kept to 6 decimals, which round-trips."""
    import random
    import uuid

    from clarity.engines.base import Point
    from clarity.engines.edge.engine import EdgeEngine
    from clarity.memory import model as m
    from clarity.memory.arguments import parse

    engine = EdgeEngine(tmp_path / "edge")
    engine.ensure_collection(4)
    rng = random.Random(7)
    values = [rng.random() for _ in range(300)] + [1.1917083741457781e-290, 1 / 3]
    points = [Point(id=str(uuid.uuid4()), vector=[1.0, 0.0, 0.0, 0.0],
                    payload={"importance": round(v, 6), "metadata": {"x": v, "deep": [{"y": -v}]},
                             "context": {"z": v}})
              for v in values]
    engine.upsert(points)
    got = {p.id: p.payload for p in engine.retrieve([p.id for p in points])}
    engine.close()
    for p in points:
        assert got[p.id] == p.payload
    req = parse(m.StoreRequest, {"id": str(uuid.uuid4()), "content": "x", "importance": 0.123456789})
    assert req.importance == 0.123457


def test_older_points_get_bm25_vectors_once(tmp_path: Path) -> None:
    """A shard written before BM25 (points with only a dense vector) gets its sparse vectors at the first
    open, so keyword search finds them; the marker makes later opens skip the scan."""
    import qdrant_edge as q

    from clarity.encoders.sparse import encode_query
    from clarity.engines.base import SearchQuery
    from clarity.engines.edge.shard import BM25_COMPLETE, DENSE, open_shard

    path = tmp_path / "edge"
    shard = open_shard(path, 4)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    texts = ["the ERR_LEASE_EXPIRED error means the lease ran out", "deploys go out on tuesday", "use pytest"]
    shard.update(q.UpdateOperation.upsert_points(
        [q.Point(i, {DENSE: [1.0, 0.0, 0.0, 0.0]}, {"content": t, "created_at": "2026-01-01T00:00:00+00:00"})
         for i, t in zip(ids, texts, strict=True)]))
    shard.flush()
    shard.close()
    assert not (path / BM25_COMPLETE).exists()

    engine = EdgeEngine(path)
    engine.ensure_collection(4)
    hits = engine.query(SearchQuery(dense=[1.0, 0.0, 0.0, 0.0], sparse=encode_query("ERR_LEASE_EXPIRED"), limit=3,
                                    mode="keyword"))
    engine.close()
    assert [h.id for h in hits][:1] == [ids[0]]
    assert (path / BM25_COMPLETE).exists()
