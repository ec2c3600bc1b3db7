"""Backups while a session runs (through the owner) and restore under the maintenance lock."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from clarity.config import DEFAULT_MODEL
from clarity.engines.edge import layout as edge_layout
from clarity.engines.edge.build_child import QUICK_INDEX
from clarity.memory import restore as backup

from .conftest import cli, open_sessions, run_async


def test_backup_while_serving_then_restore(home: Path) -> None:
    async def phase1() -> tuple[str, list[str]]:
        async with open_sessions(home, 1) as (s,):
            ids = [(await s.call("store_memory", {"content": f"backup fact number {i}"}))["id"] for i in range(3)]
            res = orjson.loads(cli(home, "backup", "--json").stdout)  # forwarded to the running owner
            assert res["count"] == 3
            await s.call("store_memory", {"content": "written after the backup"})
            busy = cli(home, "restore", res["file"], "--yes", "--timeout", "1", check=False)
            assert busy.returncode == 2 and "in use" in busy.stderr
            assert (await s.call("memory_stats"))["total"] == 4
            return res["file"], ids

    file, ids = run_async(phase1)
    lines = Path(file).read_bytes().splitlines()
    header = orjson.loads(lines[0])
    assert header["format"] == "clarity-backup" and header["dims"] == 384 and len(lines) == 4
    assert all(len(orjson.loads(line)["vector"]) == 384 for line in lines[1:])
    res = orjson.loads(cli(home, "restore", file, "--yes", "--json").stdout)
    assert res["restored"] == 3
    # the restored shard has int8 copies of its vectors to search while its index builds (as after a migration)
    assert (edge_layout.current_dir(home / "qdrant" / "edge") / QUICK_INDEX).exists()
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert sorted(m["id"] for m in listed["memories"]) == sorted(ids)
    hits = orjson.loads(cli(home, "search", "backup fact number 2", "--json").stdout)
    assert hits["memories"] and hits["memories"][0]["id"] in ids
    assert any(p.name.startswith("edge-replaced-") for p in (home / "backups").iterdir())


def test_restore_rejects_a_bad_file_and_changes_nothing(home: Path, tmp_path: Path) -> None:
    cli(home, "store", "keep me")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "clarity-backup", "version": 1, "model": '
                   '"sentence-transformers/all-MiniLM-L6-v2", "dims": 384, "count": 2}\n{"id": 1}\n')
    proc = cli(home, "restore", str(bad), "--yes", check=False)
    assert proc.returncode == 2 and "nothing restored" in proc.stderr
    assert f"{bad}:2: payload: is required" in proc.stderr
    not_backup = tmp_path / "x.jsonl"
    not_backup.write_text("hello\n")
    proc = cli(home, "restore", str(not_backup), "--yes", check=False)
    assert proc.returncode == 2 and "not a clarity backup" in proc.stderr
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert [m["content"] for m in listed["memories"]] == ["keep me"]
    assert not (home / "qdrant" / "edge.next").exists()


HEADER = {"format": "clarity-backup", "version": 1, "model": DEFAULT_MODEL, "dims": 384, "count": 0}


@pytest.mark.parametrize("header", [{**HEADER, "dims": 10}, {**HEADER, "dims": 1e9}, {**HEADER, "model": "other"},
                                    {**HEADER, "version": 2}, {**HEADER, "count": -1}, {"format": "nope"}])
def test_a_header_this_store_cannot_take_is_refused_before_anything_is_touched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: dict[str, object]) -> None:
    """A wrong model or dimension (the issue's `"dims": 10` restored "2 memories", then every call failed)
    is refused before an earlier restore is finished or a new generation is made."""
    def touched(*_args: object) -> None:
        raise AssertionError("the store was touched")

    monkeypatch.setattr(edge_layout, "finish_restore", touched)
    monkeypatch.setattr(edge_layout, "new_generation", touched)
    file = tmp_path / "b.jsonl"
    file.write_bytes(orjson.dumps(header) + b"\n")
    with pytest.raises(backup.RestoreRefused) as err:
        backup.restore_into_edge(file, tmp_path / "home" / "qdrant", DEFAULT_MODEL)
    assert str(file) in err.value.message and "\n" not in err.value.message
    assert not (tmp_path / "home").exists()


def test_an_empty_backup_restores_an_empty_store(tmp_path: Path) -> None:
    file = tmp_path / "b.jsonl"
    file.write_bytes(orjson.dumps(HEADER) + b"\n")
    assert backup.restore_into_edge(file, tmp_path / "home" / "qdrant", DEFAULT_MODEL)["restored"] == 0


def test_the_dimension_comes_from_the_model_else_the_store(tmp_path: Path) -> None:
    assert backup.model_dims(DEFAULT_MODEL) == 384
    assert backup.model_dims("BAAI/bge-small-en-v1.5") == 384  # fastembed's list, nothing loaded
    assert backup.model_dims("no/such-model") is None
    assert backup.shard_dims(tmp_path / "qdrant") is None
    from clarity.engines.edge.engine import EdgeEngine, edge_dir

    engine = EdgeEngine(edge_dir(tmp_path / "qdrant"), flush_interval_s=0, index_threshold=0)
    engine.ensure_collection(12)
    engine.close()
    assert backup.shard_dims(tmp_path / "qdrant") == 12
