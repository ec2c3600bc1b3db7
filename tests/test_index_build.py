"""The background HNSW index build (clarity.engines.edge.build): it is built and swapped in, writes
made during the build survive the swap, a SIGKILL of the owner at any stage loses nothing acknowledged,
and the build process dies with its owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from clarity.config import load_settings
from clarity.encoders.dense import Embedder
from clarity.engines.edge.build import index_layout
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.engines.edge.layout import build_dir, current_dir, generations, pointer_file
from clarity.engines.edge.shard import DATETIME_FIELDS, INDEX_LAYOUT, INDEX_LAYOUT_FILE, KEYWORD_FIELDS
from clarity.errors import EngineLocked
from clarity.faults import ENV as FAULTS_ENV
from clarity.memory.service import MemoryService
from tests.harness.processes import alive, wait_until
from tests.test_engine_edge import DIM, make_points


def wait_for(cond: Any, timeout_s: float = 30.0, what: str = "") -> None:
    assert wait_until(cond, timeout_s, every=0.02), f"timed out waiting for {what}"


def segment_indexes(shard_dir: Path) -> list[str]:
    return [json.loads(p.read_text())["config"]["vector_data"]["dense"]["index"]["type"]
            for p in (shard_dir / "segments").glob("*/segment.json")]


def _small_threshold_engine(tmp_path: Path) -> tuple[Path, EdgeEngine]:
    """An open engine (base folder, engine) that starts an index build past 200 points."""
    base = tmp_path / "q" / "edge"
    engine = EdgeEngine(base, flush_interval_s=0.05, index_threshold=200)
    engine.ensure_collection(DIM)
    return base, engine


def assert_mapped_from_disk(shard_dir: Path) -> None:
    """Every part of the built segments is mapped, not loaded into RAM at open (edge_shard.edge_config)."""
    assert index_layout(shard_dir) == INDEX_LAYOUT
    built = [p.parent for p in (shard_dir / "segments").glob("*/segment.json")
             if json.loads(p.read_text())["config"]["vector_data"]["dense"]["index"]["type"] == "hnsw"]
    assert built
    for seg in built:
        cfg = json.loads((seg / "segment.json").read_text())["config"]
        assert cfg["vector_data"]["dense"]["storage_type"] == "Mmap"
        assert cfg["vector_data"]["dense"]["index"]["options"]["memory"] == "cold"
        assert cfg["sparse_vector_data"]["bm25"]["index"]["index_type"] == "Mmap"
        types = json.loads((seg / "payload_index" / "config.json").read_text())["indexed_types"]
        assert set(types) == set(KEYWORD_FIELDS + DATETIME_FIELDS)
        for field, indexes in types.items():  # (each also has a small null index, always in RAM)
            assert [i["storage_type"] for i in indexes if i["index_type"] != "null_index"] == \
                [{"mmap": {"is_on_disk": True}}], field


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "hooks"
    d.mkdir()
    monkeypatch.setenv(FAULTS_ENV, str(d))
    return d


def test_storing_past_the_threshold_builds_the_index_in_the_background(home: Path) -> None:
    settings = load_settings(home)
    base = edge_dir(settings.qdrant_path)
    engine = EdgeEngine(base, flush_interval_s=0.05, index_threshold=200)
    svc = MemoryService(settings, lambda: engine, Embedder(settings.embedding.model, home / "cache"))
    try:
        texts = [f"note {i}: the build step {i % 17} writes artefact {i} to bucket {i % 5}" for i in range(230)]
        res = svc.store_batch([{"id": str(uuid.uuid4()), "content": t, "tags": [f"t{i % 3}"]}
                               for i, t in enumerate(texts)])
        assert all(isinstance(r, dict) and r["stored"] for r in res)
        during = svc.execute("stats", {})
        assert during["unindexed"] >= 200 or not during["index_building"]  # the build may be done already
        wait_for(lambda: engine.last_build is not None, what="the index build")
        assert engine.last_build is not None and engine.last_build.result == "done"
        assert engine.index_state()["folder"] == "edge.g1" and current_dir(base).name == "edge.g1"
        assert pointer_file(base).read_text().strip() == "edge.g1"
        assert not base.exists() and not build_dir(base).exists()  # the old generation is gone
        assert "hnsw" in segment_indexes(current_dir(base))
        assert_mapped_from_disk(current_dir(base))
        stats = svc.execute("stats", {})
        assert stats["total"] == 230 and engine.count() == 230
        assert stats["index_building"] is False and stats["unindexed"] == 0
        listed = svc.execute("list", {"limit": 500, "include_content": True})
        assert listed["total"] == 230 and {m["content"] for m in listed["memories"]} == set(texts)
        hit = svc.execute("retrieve", {"query": "artefact 123 bucket 3", "limit": 3})
        assert any("artefact 123 " in m["content"] for m in hit["memories"])
    finally:
        svc.close()
    # reopened: the indexed generation, nothing due
    again = EdgeEngine(base, index_threshold=200)
    again.ensure_collection(engine.dim)
    try:
        assert again.count() == 230 and again.index_state() == {"folder": "edge.g1", "written_since_build": 0,
                                                                 "building": False}
    finally:
        again.close()


def test_an_index_of_an_older_layout_is_rebuilt_once_at_open(tmp_path: Path) -> None:
    base, engine = _small_threshold_engine(tmp_path)
    pts = make_points(230)
    try:
        engine.upsert(pts)
        wait_for(lambda: engine.last_build is not None, what="the index build")
        assert engine.last_build is not None and engine.last_build.result == "done"
    finally:
        engine.close()
    (current_dir(base) / INDEX_LAYOUT_FILE).unlink()  # as an older version's build left it
    assert index_layout(current_dir(base)) == 1
    again = EdgeEngine(base, flush_interval_s=0.05, index_threshold=200)
    again.ensure_collection(DIM)
    try:
        assert again.index_state()["written_since_build"] == 0  # nothing new written: due for its layout
        wait_for(lambda: again.last_build is not None, what="the rebuild")
        assert again.last_build is not None and again.last_build.result == "done"
        assert again.index_state() == {"folder": "edge.g2", "written_since_build": 0, "building": False}
        assert_mapped_from_disk(current_dir(base))
        assert again.count() == 230
        assert {p.id for p in again.retrieve([p.id for p in pts])} == {p.id for p in pts}
    finally:
        again.close()
    third = EdgeEngine(base, flush_interval_s=0.05, index_threshold=200)
    third.ensure_collection(DIM)
    try:  # current layout: no build
        assert third.index_state() == {"folder": "edge.g2", "written_since_build": 0, "building": False}
    finally:
        third.close()


def test_writes_and_deletes_during_the_build_survive_the_swap(tmp_path: Path, hooks: Path) -> None:
    (hooks / "index.child.hold").touch()
    base, engine = _small_threshold_engine(tmp_path)
    try:
        pts = make_points(300)
        engine.upsert(pts[:200])
        wait_for(lambda: (hooks / "index.child").exists(), what="the build process")
        engine.upsert(pts[200:300])                      # new points, journaled
        engine.delete([p.id for p in pts[:20]])          # exported, then deleted
        engine.delete([p.id for p in pts[290:]])         # written and deleted during the build
        changed = [type(p)(p.id, {**p.payload, "content": "changed " + p.id}, p.vector) for p in pts[20:30]]
        engine.upsert(changed)                           # exported, then updated
        assert len(engine.search(pts[50].vector or [], 5)) == 5  # the old shard serves meanwhile
        with pytest.raises(EngineLocked):  # a second opener is fenced off before it touches any folder
            EdgeEngine(base).ensure_collection(DIM)
        (hooks / "index.child.hold").unlink()
        wait_for(lambda: engine.last_build is not None, what="the swap")
        assert engine.last_build is not None and engine.last_build.result == "done"
        assert engine.index_state()["folder"] == "edge.g1"
        want = {p.id for p in pts[20:290]}
        assert engine.count() == len(want) == 270
        got = {p.id: p for p in engine.retrieve([p.id for p in pts], with_vectors=True)}
        assert set(got) == want
        for p in changed:
            assert got[p.id].payload["content"] == "changed " + p.id
        assert got[pts[250].id].payload == pts[250].payload
        assert engine.search(pts[250].vector or [], 1)[0].id == pts[250].id
    finally:
        engine.close()


OWNER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.test_engine_edge import make_points
    from clarity.engines.edge.engine import EdgeEngine
    hooks = Path({hooks!r})
    e = EdgeEngine(Path({base!r}), flush_interval_s=0.05, index_threshold=200)
    e.ensure_collection({dim})
    pts = make_points(320)
    out = threading.Lock()
    def ack(op, ids):
        with out:
            print(op, *ids, flush=True)
    e.upsert(pts[:200]); ack("up", [p.id for p in pts[:200]])
    end = time.monotonic() + 60
    while not (hooks / "index.exported").exists() and time.monotonic() < end:
        time.sleep(0.02)
    e.upsert(pts[200:300]); ack("up", [p.id for p in pts[200:300]])
    e.delete([p.id for p in pts[:10]]); ack("del", [p.id for p in pts[:10]])
    e.upsert(pts[300:320]); ack("up", [p.id for p in pts[300:320]])
    (hooks / "index.exported.hold").unlink()
    def writer():  # keeps writing; blocks while the swap holds the engine lock
        while True:
            e.upsert(pts[300:320]); ack("up", [p.id for p in pts[300:320]])
            time.sleep(0.05)
    threading.Thread(target=writer, daemon=True).start()
    while not (hooks / ("index." + {stage!r})).exists() and time.monotonic() < end:
        if e.last_build is not None:
            ack("failed", [e.last_build.result.replace(" ", "_")])
        time.sleep(0.02)
    ack("at-stage", [])
    time.sleep(120)
""")


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


@pytest.mark.parametrize("stage", ["child", "swap", "switched"])
def test_sigkill_of_the_owner_during_the_build_loses_nothing(tmp_path: Path, stage: str) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for s in ("exported", stage):
        (hooks / f"index.{s}.hold").touch()
    base = tmp_path / "q" / "edge"
    root = str(Path(__file__).resolve().parent.parent)
    script = OWNER.format(root=root, hooks=str(hooks), base=str(base), dim=DIM, stage=stage)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, FAULTS_ENV: str(hooks)})
    live: set[str] = set()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            op, *ids = line.split()
            if op == "at-stage":
                break
            assert op != "failed", f"the build failed: {ids}"
            live = live | set(ids) if op == "up" else live - set(ids)
        else:
            raise AssertionError(f"the owner exited with {proc.wait()} before the stage {stage}")
        builder = children_of(proc.pid)
        assert stage != "child" or builder, "the build process should be running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in builder:  # PR_SET_PDEATHSIG: the build process dies with its owner
        wait_for(lambda pid=pid: not alive(pid), 10, "the builder to die")
    assert len(live) == 310
    engine = EdgeEngine(base, index_threshold=0)
    engine.ensure_collection(DIM)
    try:
        assert engine.count() == len(live)
        assert {p.id for p in engine.retrieve(sorted(live))} == live
        want = "edge.g1" if stage == "switched" else "edge"
        assert engine.index_state()["folder"] == want
        assert [g.name for g in generations(base)] == [want] and not build_dir(base).exists()
    finally:
        engine.close()


def test_a_failed_build_keeps_the_old_shard_and_removes_its_folder(tmp_path: Path, hooks: Path) -> None:
    (hooks / "index.exported.hold").touch()
    base, engine = _small_threshold_engine(tmp_path)
    try:
        pts = make_points(220)
        engine.upsert(pts)
        wait_for(lambda: (hooks / "index.exported").exists(), what="the export")
        (build_dir(base) / "export.jsonl").write_bytes(b"not json\n")  # the build process will fail on it
        (hooks / "index.exported.hold").unlink()
        wait_for(lambda: engine.last_build is not None, what="the build to end")
        assert engine.last_build is not None and engine.last_build.result.startswith("abandoned")
        assert [g.name for g in generations(base)] == ["edge"] and not pointer_file(base).exists()
        assert not build_dir(base).exists()
        assert engine.count() == 220 and engine.index_state() == {"folder": "edge", "written_since_build": 0,
                                                                  "building": False}
        engine.upsert(make_points(10, seed=2))  # far below the threshold: no new build right away
        assert engine.index_state()["building"] is False
    finally:
        engine.close()


def test_restore_over_an_indexed_store_is_a_new_generation_finished_after_a_kill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clarity.engines import backup
    from clarity.engines.edge import layout as edge_layout
    from clarity.memory import restore

    qdrant = tmp_path / "home" / "qdrant"
    base = qdrant / "edge"
    engine = EdgeEngine(base, index_threshold=200)
    engine.ensure_collection(DIM)
    pts = make_points(250)
    engine.upsert(pts[:230])
    assert engine.build_index(timeout_s=60) and engine.index_state()["folder"] == "edge.g1"
    file, n = backup.write_backup(engine, tmp_path / "home" / "backups", "m", DIM)
    engine.upsert(pts[230:])
    engine.close()
    # a kill right after the restored generation is complete and marked READY, before it is current
    real, calls = edge_layout.finish_restore, []

    def first_call_only(b: Path) -> None:  # restore calls it first for an older restore, then for its own
        calls.append(b)
        if len(calls) == 1:
            real(b)
    monkeypatch.setattr(edge_layout, "finish_restore", first_call_only)
    restore.restore_into_edge(file, qdrant, "m")
    assert current_dir(base).name == "edge.g1" and (qdrant / "edge.g2" / "READY").exists()
    monkeypatch.undo()
    again = EdgeEngine(base, index_threshold=0)
    again.ensure_collection(DIM)  # the next open finishes the restore
    try:
        assert n == 230 and again.count() == 230 and again.index_state()["folder"] == "edge.g2"
        assert [g.name for g in generations(base)] == ["edge.g2"] and not (qdrant / "edge.g2" / "READY").exists()
        assert len(list((tmp_path / "home" / "backups").glob("edge-replaced-*"))) == 1
    finally:
        again.close()
