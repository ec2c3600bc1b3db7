"""Benchmark stores of 1k-100k memories, built straight through the engine (not through MCP).

Vectors: the first `real` memories (at most 1000) are distinct corpus sentences embedded with the real
model; every further memory is a variant of one of them ("<sentence> (variant i)", so its content hash is
unique) whose vector is the base sentence's real vector plus small Gaussian noise, renormalised to unit
length. So searches see realistic neighbourhoods without embedding 100k texts. Payloads have the shape
the memory service writes (content, type, tags, timestamps increasing with the index, content_hash, ...).
An Edge store at or above the engine's `index_threshold` then gets its HNSW index the way a serving
owner builds it (the same child process and swap), synchronously, so a benchmark starts from the state
a long-running store is in.

A built store is a template: `template_store` builds it once under `<cache>/<engine>-<size>-.../` and
`copy_store` gives each scenario its own copy. The engine is chosen as a session would choose it: by the
`CLARITY_ENGINE` environment variable (set here for the build), through `clarity.engines.open_engine`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.harness.corpus import Corpus
from tests.harness.progress import progress

# bump when the way stores are built changes (invalidates cached templates); 2: BM25 vectors; 3: Edge stores
# are indexed (HNSW) as a serving owner would index them (`EdgeEngine.build_index`, clarity.engines.edge.build);
# 4: Edge stores in the index layout mapped from disk (`edge_shard.INDEX_LAYOUT` 2)
FORMAT = 4
# qdrant-client (legacy) stores did not change with 3 or 4: their cached templates stay valid
ENGINE_FORMAT = {"edge": FORMAT, "qdrant": 2}
ENGINE_NAMES = {"edge": "edge", "qdrant": "qdrant"}  # substring expected in Engine.name


class EngineUnavailable(RuntimeError):
    """The requested engine is not what this checkout's `open_engine` builds."""


def engine_matches(wanted: str, engine_name: str) -> bool:
    """True when an Engine named `engine_name` is the `CLARITY_ENGINE=wanted` engine."""
    name = engine_name.lower()
    if wanted == "edge":
        return "edge" in name
    return "edge" not in name and ENGINE_NAMES.get(wanted, wanted) in name


def base_vectors(texts: list[str], cache_file: Path, model_cache: Path) -> Any:
    """Real-model vectors of `texts` (numpy array), cached in `cache_file` (.npy)."""
    import numpy as np

    if cache_file.exists():
        arr = np.load(cache_file)
        if arr.shape[0] == len(texts):
            return arr
    from clarity.config import DEFAULT_MODEL
    from clarity.encoders.dense import Embedder

    arr = np.asarray(Embedder(DEFAULT_MODEL, model_cache).embed(texts), dtype=np.float32)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache_file, arr)
    return arr


def build_store(home: Path, size: int, engine: str, seed: int, vectors_cache: Path, real: int = 1000,
                batch: int = 512) -> dict[str, Any]:
    """Write `size` memories into a new store at `home` with engine `engine`; returns build facts.
    Raises EngineUnavailable when this checkout cannot build that engine."""
    import numpy as np

    from clarity.config import load_settings
    from clarity.engines import open_engine
    from clarity.engines.base import Point
    from clarity.memory.model import content_hash

    old = os.environ.get("CLARITY_ENGINE")
    os.environ["CLARITY_ENGINE"] = engine
    try:
        settings = load_settings(home)
        eng = open_engine(settings)
    finally:
        if old is None:
            os.environ.pop("CLARITY_ENGINE", None)
        else:
            os.environ["CLARITY_ENGINE"] = old
    if not engine_matches(engine, eng.name):
        eng.close()
        raise EngineUnavailable(f"CLARITY_ENGINE={engine}, but this checkout's open_engine builds {eng.name!r}")
    corpus = Corpus(seed)
    k = max(1, min(real, size))
    texts = [corpus.sentence() for _ in range(k)]
    t0 = time.perf_counter()
    vecs = base_vectors(texts, vectors_cache / f"base-{seed}-{k}.npy", settings.cache_dir)
    embed_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    ids = random_ids(seed, size)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = time.perf_counter()
    eng.ensure_collection(int(vecs.shape[1]))
    _no_sync_while_building(eng)
    threshold = getattr(eng, "index_threshold", 0)
    if threshold:
        eng.index_threshold = 0  # type: ignore[attr-defined]  # one build at the end, not one per 20k
    with progress(size, f"build {engine} {size:,}") as bar:
        for lo in range(0, size, batch):
            hi = min(size, lo + batch)
            j = np.arange(lo, hi) % k
            v = vecs[j] + np.where((np.arange(lo, hi) >= k)[:, None],
                                   rng.normal(0, 0.02, (hi - lo, vecs.shape[1])), 0)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            points = []
            for n, i in enumerate(range(lo, hi)):
                text = texts[i % k] if i < k else f"{texts[i % k]} (variant {i})"
                ts = (start + timedelta(seconds=i)).isoformat(timespec="microseconds")
                payload = {"content": text, "memory_type": "note", "importance": 0.5, "tags": ["bench"],
                           "metadata": {}, "context": {}, "created_at": ts, "updated_at": ts,
                           "content_hash": content_hash(text), "session": "bench-build"}
                points.append(Point(id=ids[i], payload=payload, vector=v[n].tolist()))
            eng.upsert(points)
            bar.advance(hi - lo)
    index_s = None
    if threshold and size >= threshold:  # what an owner would have done by now, done synchronously
        t2 = time.perf_counter()
        if not eng.build_index():  # type: ignore[attr-defined]
            raise RuntimeError("the index build of the bench store failed (see the log)")
        index_s = round(time.perf_counter() - t2, 2)
    count = eng.count()
    name = eng.name
    eng.close()
    if count != size:
        raise RuntimeError(f"built {count} memories, expected {size}")
    return {"size": size, "engine": engine, "engine_name": name, "real_vectors": k, "embed_s": round(embed_s, 2),
            "upsert_s": round(time.perf_counter() - t1, 2), "index_s": index_s, "bytes": dir_bytes(home / "qdrant")}


def _no_sync_while_building(eng: Any) -> None:
    """qdrant-client's local store commits (and syncs) its SQLite file once per point: about 26 ms a
    point here, 45 minutes for 100k. A bench build turns the sync off on that connection; the file
    format written is the same, and the store is closed (and so complete) before anyone uses it."""
    client = getattr(getattr(eng, "_client", None), "_client", None)
    for coll in getattr(client, "collections", {}).values():
        conn = getattr(getattr(coll, "storage", None), "storage", None)
        if conn is not None:
            conn.execute("PRAGMA synchronous=OFF")


def random_ids(seed: int, n: int) -> list[str]:
    import random

    r = random.Random(seed)
    return [str(uuid.UUID(int=r.getrandbits(128), version=4)) for _ in range(n)]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def template_store(cache: Path, size: int, engine: str, seed: int = 7) -> tuple[Path, dict[str, Any]]:
    """A built store (home folder) for (engine, size), made once and reused while FORMAT is unchanged."""
    tpl = cache / "stores" / f"{engine}-{size}-seed{seed}-f{ENGINE_FORMAT.get(engine, FORMAT)}"
    info_file = tpl / "bench-store.json"
    if info_file.exists():
        return tpl / "home", {**json.loads(info_file.read_text()), "from_cache": True}
    shutil.rmtree(tpl, ignore_errors=True)
    tmp = cache / "stores" / f".{tpl.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        info = build_store(tmp / "home", size, engine, seed, cache / "vectors")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / "bench-store.json").write_text(json.dumps(info))
    tmp.rename(tpl)  # the template appears complete or not at all
    return tpl / "home", {**info, "from_cache": False}


def copy_store(template_home: Path, dest: Path) -> Path:
    """A private copy of a template home for one scenario (logs and coordination state left behind)."""
    shutil.copytree(template_home, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("logs", "*.log", ".qdrant_coordination"))
    for sub in ("logs", "qdrant/.qdrant_coordination/waiters"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    return dest
