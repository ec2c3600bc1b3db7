"""Migration of a qdrant-client home to Edge: exactly once, nothing lost, kills at every stage, the copy
in a child process (failing, overdue, orphaned)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

import orjson
import pytest

from clarity.config import load_settings
from clarity.engines.edge.engine import EdgeEngine, edge_dir
from clarity.engines.edge.migrate import legacy_present, migrate_if_needed
from clarity.errors import MigrationFailed
from clarity.faults import ENV as FAULTS_ENV
from tests.harness.processes import alive, wait_until

from .conftest import cli

DIM = 384


def write_legacy(home: Path, n: int, seed: int = 3) -> dict[str, dict[str, object]]:
    """A store as today's version writes it: qdrant-client local, collection `memories`, unnamed vector."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    settings = load_settings(home)
    rng = random.Random(seed)
    client = QdrantClient(path=str(settings.qdrant_path))
    client.create_collection("memories", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
    points: dict[str, dict[str, object]] = {}
    structs = []
    for i in range(n):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ts = f"2025-02-{1 + i % 28:02d}T10:00:00.{i:06d}+00:00"
        payload = {"content": f"legacy memory {i}", "memory_type": "note" if i % 2 else "fact",
                   "importance": 0.5, "tags": [f"t{i % 5}"], "metadata": {"i": i}, "context": {},
                   "created_at": ts, "updated_at": ts, "content_hash": f"{i:064x}", "session": "old"}
        points[pid] = payload
        structs.append(m.PointStruct(id=pid, vector=[rng.uniform(-1, 1) for _ in range(DIM)], payload=payload))
    for start in range(0, n, 500):
        client.upsert("memories", structs[start:start + 500])
    client.close()
    return points


def check_migrated(home: Path, points: dict[str, dict[str, object]]) -> None:
    settings = load_settings(home)
    assert not legacy_present(settings.qdrant_path)
    assert not (settings.qdrant_path / "collection").exists()
    assert not (settings.qdrant_path / "edge.migrating").exists()
    backups = [p for p in settings.backups_dir.iterdir() if p.name.startswith("qdrant-client-")]
    assert len(backups) == 1 and (backups[0] / "meta.json").exists()
    assert (backups[0] / "collection" / "memories").is_dir()
    e = EdgeEngine(edge_dir(settings.qdrant_path))
    e.ensure_collection(DIM)
    try:
        assert e.count() == len(points)
        got = {p.id: p for p in e.retrieve(list(points), with_vectors=True)}
        assert {k: v.payload for k, v in got.items()} == points
        assert all(v.vector is not None and len(v.vector) == DIM for v in got.values())
    finally:
        e.close()


def test_migrates_exactly_once(home: Path) -> None:
    points = write_legacy(home, 700)
    settings = load_settings(home)
    res = migrate_if_needed(settings, DIM, nullcontext)
    assert res is not None and res["count"] == 700
    check_migrated(home, points)
    assert migrate_if_needed(settings, DIM, nullcontext) is None


def _segment_configs(shard_dir: Path) -> list[dict[str, object]]:
    return [orjson.loads((seg / "segment.json").read_bytes())["config"]["vector_data"]["dense"]
            for seg in (shard_dir / "segments").iterdir() if (seg / "segment.json").exists()]


def test_the_migrated_store_searches_its_quick_index_until_the_hnsw_build_replaces_it(home: Path) -> None:
    """The child gives the shard int8 copies of its vectors before the swap: the store searches them (each
    legacy vector finds its own point first, with its exact cosine), its stored vectors are the legacy
    ones; the first index build after the swap replaces it with an HNSW generation holding every point
    and every vector unchanged; a write made meanwhile survives the swap."""
    import numpy as np

    from clarity.engines.base import Point
    from clarity.engines.edge.build_child import QUICK_INDEX
    from clarity.engines.edge.layout import current_dir
    from clarity.engines.qdrant_local import open_store

    points = write_legacy(home, 1500)
    settings = load_settings(home)
    res = migrate_if_needed(settings, DIM, nullcontext)
    assert res is not None and res["count"] == 1500 and res["quick_index_seconds"] > 0
    base = edge_dir(settings.qdrant_path)
    assert (base / QUICK_INDEX).exists()
    quantised = [c for c in _segment_configs(base) if c.get("quantization_config")]
    assert quantised and quantised[0]["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99,
                                                                            "always_ram": False}}
    backup = next(p for p in settings.backups_dir.iterdir() if p.name.startswith("qdrant-client-"))
    legacy = {str(uuid.UUID(str(p.id))): (np.asarray(p.dense[""]) / np.linalg.norm(p.dense[""])).tolist()
              for p in open_store(backup).points("memories", with_vectors=True)}  # cosine: stored normalised

    def check(e: EdgeEngine) -> None:
        got = {p.id: p.vector for p in e.retrieve(list(points), with_vectors=True)}
        assert set(got) == set(points)
        for pid, vec in got.items():
            assert np.allclose(vec, legacy[pid], atol=1e-6), pid
        for pid in list(points)[:: 150]:
            hits = e.search(legacy[pid], 3)
            assert hits[0].id == pid and abs((hits[0].score or 0) - 1.0) < 1e-3

    e = EdgeEngine(base, index_threshold=0)  # no build: the quick index serves
    e.ensure_collection(DIM)
    try:
        check(e)
    finally:
        e.close()
    e = EdgeEngine(base, index_threshold=1000)  # 1500 unindexed points: the build starts at open
    e.ensure_collection(DIM)
    try:
        assert e.index_state()["building"]
        late = Point(id=str(uuid.uuid4()), payload={"content": "written during the build", "created_at":
                                                    "2025-03-01T00:00:00.000000+00:00"}, vector=[0.5] * DIM)
        e.upsert([late])
        assert e.build_index(timeout_s=300)
        assert current_dir(base) != base and e.count() == 1501
        assert not any(c.get("quantization_config") for c in _segment_configs(current_dir(base)))
        check(e)
        assert e.retrieve([late.id])[0].payload["content"] == "written during the build"
    finally:
        e.close()


def test_first_call_through_the_cli_migrates(home: Path) -> None:
    points = write_legacy(home, 50)
    listed = orjson.loads(cli(home, "list", "--json", "--limit", "3").stdout)
    assert listed["total"] == 50
    newest = sorted(points.items(), key=lambda kv: (str(kv[1]["created_at"]), kv[0]), reverse=True)[:3]
    assert [m["id"] for m in listed["memories"]] == [k for k, _ in newest]
    check_migrated(home, points)


MIGRATE = ("import sys\nfrom contextlib import nullcontext\nfrom clarity.config import load_settings\n"
           "from clarity.engines.edge.migrate import migrate_if_needed\n"
           "migrate_if_needed(load_settings(sys.argv[1]), 384, nullcontext)\n")


def _hold(tmp_path: Path, stage: str) -> tuple[dict[str, str], Path]:
    """An environment whose migration stops at `stage` (clarity.faults), and the marker it writes there."""
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    (faults / f"migrate.{stage}.hold").touch()
    return {**os.environ, FAULTS_ENV: str(faults)}, faults / f"migrate.{stage}"


@pytest.mark.parametrize("stage", ["copy", "before-commit", "after-commit", "moving"])
def test_kill_at_any_stage_then_next_owner_finishes(home: Path, tmp_path: Path, stage: str) -> None:
    points = write_legacy(home, 300)
    env, marker = _hold(tmp_path, stage)
    proc = subprocess.Popen([sys.executable, "-c", MIGRATE, str(home)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the migration never reached " + stage
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    settings = load_settings(home)
    if stage in ("copy", "before-commit"):
        assert not edge_dir(settings.qdrant_path).exists() and legacy_present(settings.qdrant_path)
    else:
        assert edge_dir(settings.qdrant_path).exists() and legacy_present(settings.qdrant_path)
    migrate_if_needed(settings, DIM, nullcontext)
    check_migrated(home, points)


RUN_AND_REPORT = ("import json, os, sys\nfrom contextlib import nullcontext\nfrom clarity.config import load_settings\n"
                  "from clarity.engines.edge.migrate import migrate_if_needed\n"
                  "res = migrate_if_needed(load_settings(sys.argv[1]), 384, nullcontext)\n"
                  "loaded = 'qdrant_client' in sys.modules\n"
                  "print(json.dumps({'res': res, 'pid': os.getpid(), 'qdrant_client': loaded}))\n")


def test_the_copy_runs_in_a_child_process(home: Path) -> None:
    """The owner never loads the legacy store: qdrant_client is not imported in it, another pid copied."""
    points = write_legacy(home, 400)
    proc = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, str(home)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert out["res"]["count"] == 400
    assert out["qdrant_client"] is False
    assert isinstance(out["res"].get("child_pid"), int) and out["res"]["child_pid"] != out["pid"]
    assert "migration child" in proc.stderr  # the child logs to stderr, never to stdout
    check_migrated(home, points)
    assert not (load_settings(home).qdrant_path / "edge.migrating.lock").exists()


def _legacy_files(home: Path) -> dict[str, bytes]:
    q = load_settings(home).qdrant_path
    return {str(p.relative_to(q)): p.read_bytes() for p in sorted(q.rglob("*"))
            if p.is_file() and p.name != ".lock" and ".qdrant_coordination" not in p.parts}


def test_a_failing_child_leaves_the_legacy_store_untouched(home: Path) -> None:
    write_legacy(home, 100)
    settings = load_settings(home)
    (sqlite,) = (settings.qdrant_path / "collection" / "memories").glob("*.sqlite")
    sqlite.write_bytes(b"this is not a database" * 100)
    before = _legacy_files(home)
    with pytest.raises(MigrationFailed) as err:
        migrate_if_needed(settings, DIM, nullcontext)
    assert "exit code 1" in err.value.message and "the legacy store stays" in err.value.message
    assert "database" in err.value.message  # the child's own error travels to the parent
    assert _legacy_files(home) == before
    assert legacy_present(settings.qdrant_path) and not edge_dir(settings.qdrant_path).exists()
    assert not (settings.qdrant_path / "edge.migrating").exists()
    assert not settings.backups_dir.exists() or not any(settings.backups_dir.iterdir())


def _gone(pid: int, timeout: float = 20.0) -> bool:
    """`pid` has exited (a zombie runs no more: its parent reaps it) within `timeout` seconds."""
    return wait_until(lambda: not alive(pid), timeout)


def test_an_overdue_child_is_killed_and_nothing_changes(home: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    points = write_legacy(home, 200)
    env, marker = _hold(tmp_path, "copy")
    monkeypatch.setenv(FAULTS_ENV, env[FAULTS_ENV])
    monkeypatch.setenv("CLARITY_MIGRATE_DEADLINE_S", "8")
    settings = load_settings(home)
    before = _legacy_files(home)
    with pytest.raises(MigrationFailed, match="did not finish within 8 s"):
        migrate_if_needed(settings, DIM, nullcontext)
    child = int(marker.read_text())
    assert child != os.getpid() and _gone(child)
    assert _legacy_files(home) == before and not (settings.qdrant_path / "edge.migrating").exists()
    monkeypatch.delenv(FAULTS_ENV)
    monkeypatch.delenv("CLARITY_MIGRATE_DEADLINE_S")
    settings = load_settings(home)
    migrate_if_needed(settings, DIM, nullcontext)
    check_migrated(home, points)


def test_sigkill_of_the_parent_kills_the_child(home: Path, tmp_path: Path) -> None:
    points = write_legacy(home, 300)
    env, marker = _hold(tmp_path, "copy")
    proc = subprocess.Popen([sys.executable, "-c", MIGRATE, str(home)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child = int(marker.read_text())
    assert child != proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert _gone(child), f"the migration child {child} outlived its parent"
    migrate_if_needed(load_settings(home), DIM, nullcontext)
    check_migrated(home, points)


class _RunsCode:
    """Pickles as `os.system(cmd)`: what a crafted store holds to run code in whoever unpickles it."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.cmd,)


def test_a_crafted_legacy_store_runs_nothing_and_stays(home: Path, tmp_path: Path) -> None:
    import pickle
    import sqlite3

    write_legacy(home, 60)
    settings = load_settings(home)
    (sqlite,) = (settings.qdrant_path / "collection" / "memories").glob("*.sqlite")
    marker = tmp_path / "marker"
    con = sqlite3.connect(sqlite)
    with con:
        con.execute("UPDATE points SET point = ? WHERE rowid = 7", (pickle.dumps(_RunsCode(f"touch {marker}")),))
    con.close()
    before = _legacy_files(home)
    with pytest.raises(MigrationFailed) as err:
        migrate_if_needed(settings, DIM, nullcontext)
    assert not marker.exists(), "the migration ran code from the legacy store"
    assert str(sqlite) in err.value.message and "unreadable" in err.value.message, err.value.message
    assert _legacy_files(home) == before and not edge_dir(settings.qdrant_path).exists()


def test_a_garbage_meta_json_is_named(home: Path) -> None:
    write_legacy(home, 10)
    settings = load_settings(home)
    (settings.qdrant_path / "meta.json").write_bytes(b"\x00\xff not json")
    with pytest.raises(MigrationFailed) as err:
        migrate_if_needed(settings, DIM, nullcontext)
    assert str(settings.qdrant_path / "meta.json") in err.value.message, err.value.message
    assert legacy_present(settings.qdrant_path) and not edge_dir(settings.qdrant_path).exists()


def test_a_legacy_vector_of_another_size_is_named(home: Path) -> None:
    points = write_legacy(home, 20)
    settings = load_settings(home)
    with pytest.raises(MigrationFailed) as err:
        migrate_if_needed(settings, DIM + 1, nullcontext)
    assert "385" in err.value.message and any(pid in err.value.message for pid in points), err.value.message
    assert legacy_present(settings.qdrant_path) and not edge_dir(settings.qdrant_path).exists()


def test_a_legacy_store_written_after_the_migration_is_moved_aside_not_a_reason_to_fail(home: Path) -> None:
    """Regression (two versions on one store): an older Clarity wrote a new legacy store beside the migrated
    Edge one; from then on every call of the newer one failed (`Directory not empty: .../qdrant/collection ->
    .../backups/qdrant-client-...`). Now the late files move aside under a name of their own, once."""
    points = write_legacy(home, 40)
    settings = load_settings(home)
    assert migrate_if_needed(settings, DIM, nullcontext) is not None
    late = write_legacy(home, 7, seed=11)  # what an old session writes afterwards
    assert legacy_present(settings.qdrant_path)
    res = migrate_if_needed(settings, DIM, nullcontext)
    assert res is not None and not legacy_present(settings.qdrant_path)
    aside = [p for p in settings.backups_dir.iterdir() if "-leftover-" in p.name]
    assert len(aside) == 1 and (aside[0] / "meta.json").exists() and (aside[0] / "collection" / "memories").is_dir()
    assert migrate_if_needed(settings, DIM, nullcontext) is None
    listed = orjson.loads(cli(home, "list", "--json", "--limit", "100").stdout)
    assert listed["total"] == len(points)  # the Edge store is intact and serves
    out = cli(home, "import", "--qdrant-path", str(aside[0]), "--json")  # the late memories can be brought in
    assert out.returncode == 0 and orjson.loads(out.stdout)["imported"] == len(late)
