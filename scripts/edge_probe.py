"""Measure Qdrant Edge (through clarity's EdgeEngine) where the design depends on it.

Prints figures and writes docs/bench/edge_probe.json and docs/bench/edge_probe.md:
- per size (default 1k, 10k, 100k random 384-dim points with clarity payloads): open (load) time,
  exact search top-5, newest 20 (order-by), exact count, facet, 1-point upsert, upsert + flush;
- HNSW at --hnsw-n points: optimize() time, search after it, and the longest stall of another
  Python thread while optimize() runs (does it hold the GIL?); then the same through the background
  build clarity uses (clarity.engines.edge.build: child process + swap): its time, the swap pause,
  the longest stall of another thread meanwhile, search after it;
- durability cost: flush per acknowledgement vs group commit with 8 writer threads;
- migration of a qdrant-client store of --migrate-n points (0 skips it).
Usage: python scripts/edge_probe.py [--sizes 1000,10000,100000] [--hnsw-n 20000] [--migrate-n 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from clarity.engines.base import Point
from clarity.engines.edge.engine import EdgeEngine
from clarity.engines.edge.group_commit import GroupCommit

DIM = 384
OUT = Path(__file__).resolve().parent.parent / "docs" / "bench"


def ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(statistics.median(s) * 1000, 3), "p95_ms": round(s[int(len(s) * 0.95) - 1] * 1000, 3)}


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def points(n: int, rng: np.random.Generator, start: int = 0) -> list[Point]:
    v = rng.standard_normal((n, DIM)).astype("float32")
    types = ["note", "fact", "decision", "preference", "pattern"]
    return [Point(str(uuid.uuid4()), {
        "content": f"memory {start + i}", "memory_type": types[i % 5], "tags": [f"t{i % 7}"],
        "created_at": f"2025-{1 + (start + i) % 12:02d}-01T00:00:{(start + i) % 60:02d}.{start + i:06d}+00:00",
        "content_hash": f"{start + i:064x}", "session": "probe", "importance": 0.5}, v[i].tolist())
        for i in range(n)]


def build(path: Path, n: int, rng: np.random.Generator) -> EdgeEngine:
    e = EdgeEngine(path, flush_interval_s=0, index_threshold=0)
    e.ensure_collection(DIM)
    for start in range(0, n, 2000):
        e._s().update(__import__("qdrant_edge").UpdateOperation.upsert_points(
            [__import__("qdrant_edge").Point(p.id, {"dense": p.vector}, p.payload)
             for p in points(min(2000, n - start), rng, start)]))
    e._s().flush()
    return e


def probe_size(root: Path, n: int, rng: np.random.Generator) -> dict[str, Any]:
    path = root / f"edge-{n}"
    e = build(path, n, rng)
    e.close()
    t = time.perf_counter()
    e = EdgeEngine(path, flush_interval_s=3600, index_threshold=0)
    e.ensure_collection(DIM)
    r: dict[str, Any] = {"n": n, "open_s": round(time.perf_counter() - t, 3)}
    q = rng.standard_normal(DIM).tolist()
    r["search_exact_top5"] = ms(timed(lambda: e.search(q, 5), 30))
    r["newest_20"] = ms(timed(lambda: e.newest(None, 0, 20), 30))
    r["count_exact"] = ms(timed(lambda: e.count(), 30))
    r["count_filtered"] = ms(timed(lambda: e.count({"tags": ["t3"]}), 30))
    r["facet_memory_type"] = ms(timed(lambda: e.facet("memory_type"), 30))
    r["find_by_hash"] = ms(timed(lambda: e.find({"memory_type": "note", "content_hash": f"{5:064x}"}), 30))
    one = iter(points(200, rng, n))
    r["upsert_1"] = ms(timed(lambda: e.upsert([next(one)]), 100))

    def upsert_flush() -> None:
        e.upsert([next(one)])
        e._s().flush()
    r["upsert_1_plus_flush"] = ms(timed(upsert_flush, 50))
    r["storage_bytes"] = e.storage_bytes()
    e.close()
    return r


def longest_stall(fn: Any) -> tuple[float, float]:
    """(seconds fn took, longest stall of another Python thread ticking every 5 ms meanwhile)."""
    stalls: list[float] = [0.0]
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            time.sleep(0.005)
            stalls.append(time.perf_counter() - t - 0.005)
    th = threading.Thread(target=ticker)
    th.start()
    t = time.perf_counter()
    fn()
    took = time.perf_counter() - t
    stop.set()
    th.join()
    return took, max(stalls)


def probe_hnsw(root: Path, n: int, rng: np.random.Generator) -> dict[str, Any]:
    e = build(root / "hnsw", n, rng)
    q = rng.standard_normal(DIM).tolist()
    r: dict[str, Any] = {"n": n, "search_exact_top5": ms(timed(lambda: e.search(q, 5), 20))}
    took, stall = longest_stall(lambda: e._s().optimize())  # in place: holds the GIL throughout
    r["optimize_s"] = round(took, 2)
    r["longest_stall_of_another_thread_during_optimize_s"] = round(stall, 2)
    r["search_hnsw_top5"] = ms(timed(lambda: e.search(q, 5), 50))
    e.close()
    e = build(root / "background", n, rng)
    took, stall = longest_stall(e.build_index)
    b = e.last_build
    r["background_build"] = {"s": round(took, 2), "result": b.result if b else None,
                             "swap_pause_s": round((b.swap_pause_s or 0) if b else 0, 3),
                             "longest_stall_of_another_thread_s": round(stall, 3),
                             "search_top5": ms(timed(lambda: e.search(q, 5), 50))}
    e.close()
    return r


def probe_commit(root: Path, rng: np.random.Generator, writers: int = 8, per_writer: int = 25) -> dict[str, Any]:
    out: dict[str, Any] = {"writers": writers, "writes": writers * per_writer}
    for mode in ("flush_per_ack", "group_commit"):
        e = build(root / f"commit-{mode}", 10_000, rng)
        g = GroupCommit(e._s().flush)
        pts = points(writers * per_writer, rng, 10_000)
        lat: list[float] = []
        lock = threading.Lock()

        def writer(k: int, g: GroupCommit = g, e: EdgeEngine = e, pts: list[Point] = pts,
                   mode: str = mode, lat: list[float] = lat, lock: threading.Lock = lock) -> None:
            for i in range(per_writer):
                t = time.perf_counter()
                e.upsert([pts[k * per_writer + i]])
                if mode == "flush_per_ack":
                    e._s().flush()
                else:
                    g.commit()
                with lock:
                    lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        ths = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        wall = time.perf_counter() - t0
        out[mode] = {**ms(lat), "acks_per_s": round(len(lat) / wall, 1),
                     "flushes": g.flushes if mode == "group_commit" else len(lat)}
        e.close()
    return out


def probe_migration(root: Path, n: int, rng: np.random.Generator) -> dict[str, Any]:
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    from clarity.engines.edge.migrate import migrate

    qpath = root / "home" / "qdrant"
    qpath.mkdir(parents=True)
    c = QdrantClient(path=str(qpath))
    c.create_collection("memories", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
    # input only: build the legacy store with SQLite's per-point fsync off (its commits are per point)
    c._client.collections["memories"].storage.storage.execute("PRAGMA synchronous=OFF")
    t = time.perf_counter()
    for start in range(0, n, 2000):
        c.upsert("memories", [m.PointStruct(id=p.id, vector=p.vector or [], payload=p.payload)
                              for p in points(min(2000, n - start), rng, start)])
    c.close()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    res = migrate(qpath, root / "home" / "backups", DIM)
    return {"n": n, "build_legacy_s": round(build_s, 1), "migrate_s": round(time.perf_counter() - t, 1),
            "migrated": res["count"]}


def window_store(path: Path, n: int, rng: np.random.Generator, quick: bool) -> float:
    """A shard of `n` random unit vectors written as the migration's child writes it (the engine's point
    encoding, batches of 4096, flushed), then, when `quick`, given the quick index; its seconds."""
    import qdrant_edge as q

    from clarity.engines.edge.build_child import quick_index
    from clarity.engines.edge.migrate_child import BATCH
    from clarity.engines.edge.shard import edge_point, open_shard

    shard = open_shard(path, DIM)
    for start in range(0, n, BATCH):
        pts = points(min(BATCH, n - start), rng, start)
        shard.update(q.UpdateOperation.upsert_points(
            [edge_point(p.id, (np.asarray(p.vector) / np.linalg.norm(p.vector)).tolist(), p.payload) for p in pts]))
    shard.flush()
    shard.close()
    return quick_index(path, DIM) if quick else 0.0


def retrieve_query(rng: np.random.Generator) -> Any:
    """The search a default `retrieve` makes (hybrid, not superseded, limit 5 + 10), random query vector."""
    from clarity.encoders.sparse import encode_query
    from clarity.engines.base import SearchQuery

    v = rng.standard_normal(DIM)
    return SearchQuery(dense=(v / np.linalg.norm(v)).tolist(), sparse=encode_query("memory"), limit=15,
                       mode="hybrid", flt={"memory_type": None, "tags": None, "superseded_by": {"is_empty": True},
                                           "created_at": None}, min_similarity=0.25)


def top_agreement(e: EdgeEngine, rng: np.random.Generator, k: int = 10, n: int = 30) -> float:
    """Mean share of the exact top-k (float vectors, `exact=True`) that the engine's dense search (its
    parameters: `hybrid.dense_params`) returns."""
    import qdrant_edge as q

    from clarity.engines.edge.shard import DENSE
    from clarity.engines.hybrid import dense_params

    got = 0
    for _ in range(n):
        v = rng.standard_normal(DIM)
        vec = (v / np.linalg.norm(v)).tolist()
        ids = []
        for params in (dense_params(), q.SearchParams(exact=True)):
            req = q.QueryRequest(limit=k, query=q.Query.Nearest(vec, using=DENSE), params=params)
            with e._lock:
                ids.append({str(r.id) for r in e._s().query(req)})
        got += len(ids[0] & ids[1])
    return round(got / (n * k), 4)


def probe_window(root: Path, n: int, rng: np.random.Generator) -> dict[str, Any]:
    """The first minutes after a migration: a store of `n` points opened with the default index
    threshold starts its first HNSW build at once; retrieve's search is timed every 0.1 s through the
    build, by phase (export, child, after the swap), for the store as the migration wrote it before
    (`exact`) and with its quick index (`quick`)."""
    out: dict[str, Any] = {"n": n}
    for name, quick in (("exact", False), ("quick", True)):
        path = root / f"window-{name}" / "edge"
        t = time.perf_counter()
        quick_s = window_store(path, n, rng, quick)
        r: dict[str, Any] = {"write_s": round(time.perf_counter() - t - quick_s, 1), "quick_index_s": round(quick_s, 2)}
        e = EdgeEngine(path, flush_interval_s=1.0)
        e.ensure_collection(DIM)
        if quick:
            r["top10_agreement_with_exact"] = top_agreement(e, rng)
        phases: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        while True:
            b = e._build
            phase = "after" if b is None else "export" if "export_s" not in b.timings else "child"
            sq = retrieve_query(rng)
            t = time.perf_counter()
            e.query(sq)
            lat = time.perf_counter() - t
            phases.setdefault(phase, []).append(lat)
            if phase == "after" and len(phases["after"]) >= 30:
                break
            if time.perf_counter() - t0 > 3600:
                break
            time.sleep(0.1)
        during = phases.get("export", []) + phases.get("child", [])
        r["during_build"] = {**ms(during), "n": len(during)} if during else None
        r.update({k: {**ms(v), "n": len(v)} for k, v in phases.items()})
        lb = e.last_build
        r["build"] = {"result": lb.result if lb else None,
                      **({k: round(v, 1) for k, v in lb.timings.items()} if lb else {})}
        e.close()
        out[name] = r
        print(json.dumps({name: r}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--hnsw-n", type=int, default=20000)
    ap.add_argument("--migrate-n", type=int, default=100000)
    ap.add_argument("--window-n", type=int, default=100000,
                    help="points of the after-migration window probe (0 skips it)")
    ap.add_argument("--window-only", action="store_true", help="run the after-migration window probe only")
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    random.seed(7)
    res: dict[str, Any] = {"machine": f"{platform.machine()} {platform.system()}, python {sys.version.split()[0]}",
                           "qdrant_edge": __import__("importlib.metadata").metadata.version("qdrant-edge-py")}
    with tempfile.TemporaryDirectory(prefix="edge-probe-") as tmp:
        root = Path(tmp)
        if a.window_only:
            res["window"] = probe_window(root, a.window_n, rng)
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / "edge_window.json").write_text(json.dumps(res, indent=2) + "\n")
            (OUT / "edge_window.md").write_text(render_window(res))
            print(render_window(res))
            return
        res["sizes"] = []
        for n in (int(x) for x in a.sizes.split(",") if x):
            r = probe_size(root, n, rng)
            print(json.dumps(r), flush=True)
            res["sizes"].append(r)
        res["commit"] = probe_commit(root, rng)
        print(json.dumps(res["commit"]), flush=True)
        if a.hnsw_n:
            res["hnsw"] = probe_hnsw(root, a.hnsw_n, rng)
            print(json.dumps(res["hnsw"]), flush=True)
        if a.migrate_n:
            res["migration"] = probe_migration(root, a.migrate_n, rng)
            print(json.dumps(res["migration"]), flush=True)
        if a.window_n:
            res["window"] = probe_window(root, a.window_n, rng)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "edge_probe.json").write_text(json.dumps(res, indent=2) + "\n")
    (OUT / "edge_probe.md").write_text(render(res))
    print(f"wrote {OUT / 'edge_probe.json'} and edge_probe.md")


def render_window(res: dict[str, Any]) -> str:
    w = res["window"]
    lines = ["# The window after a migration (scripts/edge_probe.py --window-only)", "",
             f"{res['machine']}, qdrant-edge-py {res['qdrant_edge']}. {w['n']} random unit 384-dim vectors "
             "(not real embeddings: latency only) written as the migration's child writes them, then opened "
             "with the default index threshold, which starts the first HNSW build at once; retrieve's search "
             "(hybrid, limit 15, not superseded) timed every 0.1 s until 30 searches after the swap. One run, "
             "both stores in turn, on a shared 2-core machine. ms p50 (p95).", "",
             "| store as migrated | quick index s | during the build | export | child | after the swap | build s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in (("exact", "float vectors, exact search (before)"),
                        ("quick", "quick index: int8 copies, no graph (now)")):
        r = w.get(name)
        if not r:
            continue

        def cell(k: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return f"{v['p50_ms']} ({v['p95_ms']}), n={v['n']}" if v else "-"
        lines.append(f"| {label} | {r['quick_index_s']} | {cell('during_build')} | {cell('export')} | "
                     f"{cell('child')} | {cell('after')} | {r['build'].get('total_s', '-')} |")
    q = w.get("quick", {})
    if "top10_agreement_with_exact" in q:
        lines += ["", f"Quick index, dense top-10 against exact float search: {q['top10_agreement_with_exact']:.3f} "
                  "of the exact top 10 returned (30 random queries)."]
    return "\n".join(lines) + "\n"


def render(res: dict[str, Any]) -> str:
    lines = ["# Qdrant Edge probe (scripts/edge_probe.py)", "",
             f"{res['machine']}, qdrant-edge-py {res['qdrant_edge']}; random 384-dim vectors; p50 (p95) in ms.",
             "", "| points | open s | exact search | newest 20 | count | count+filter | facet | dedup find "
             "| upsert 1 | upsert+flush |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["sizes"]:
        cells = [f"{r[k]['p50_ms']} ({r[k]['p95_ms']})" for k in (
            "search_exact_top5", "newest_20", "count_exact", "count_filtered", "facet_memory_type",
            "find_by_hash", "upsert_1", "upsert_1_plus_flush")]
        lines.append(f"| {r['n']} | {r['open_s']} | " + " | ".join(cells) + " |")
    c = res["commit"]
    lines += ["", f"Acknowledgement cost with {c['writers']} concurrent writers ({c['writes']} writes, 10k store):", "",
              "| mode | p50 ms | p95 ms | acks/s | flushes |", "|---|---:|---:|---:|---:|"]
    for mode in ("flush_per_ack", "group_commit"):
        m = c[mode]
        lines.append(f"| {mode} | {m['p50_ms']} | {m['p95_ms']} | {m['acks_per_s']} | {m['flushes']} |")
    if "hnsw" in res:
        h = res["hnsw"]
        lines += ["", f"HNSW at {h['n']} points: optimize() {h['optimize_s']} s; exact search "
                  f"{h['search_exact_top5']['p50_ms']} ms -> HNSW {h['search_hnsw_top5']['p50_ms']} ms; another "
                  f"Python thread stalled up to {h['longest_stall_of_another_thread_during_optimize_s']} s while "
                  "optimize() ran (it holds the GIL: nothing else in the process runs)."]
        bg = h.get("background_build")
        if bg:
            lines += ["", f"Background build (child process + swap, clarity.engines.edge.build) at {h['n']} points: "
                      f"{bg['s']} s, {bg['result']}; swap pause {bg['swap_pause_s']} s; another Python thread "
                      f"stalled up to {bg['longest_stall_of_another_thread_s']} s; search after it "
                      f"{bg['search_top5']['p50_ms']} ms."]
    if "migration" in res:
        mg = res["migration"]
        lines += ["", f"Migration of a qdrant-client store of {mg['n']} points: {mg['migrate_s']} s "
                  f"(building that legacy store took {mg['build_legacy_s']} s)."]
    lines += ["", "Decisions drawn from these figures: see the docstrings of clarity/engines/base.py and "
              "clarity/engines/edge/engine.py.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
