"""Backups while a session runs (through the owner) and restore under the maintenance lock."""

from __future__ import annotations

from pathlib import Path

import orjson

from .conftest import cli, open_sessions, run_async


def test_backup_while_serving_then_restore(home: Path) -> None:
    async def phase1() -> tuple[str, list[str]]:
        async with open_sessions(home, 1) as (s,):
            ids = [(await s.call("store_memory", {"content": f"backup fact number {i}"}))["id"] for i in range(3)]
            res = orjson.loads(cli(home, "backup", "--json").stdout)  # forwarded to the running owner
            assert res["count"] == 3
            await s.call("store_memory", {"content": "written after the backup"})
            busy = cli(home, "restore", res["file"], "--timeout", "1", check=False)
            assert busy.returncode == 2 and "in use" in busy.stderr
            assert (await s.call("memory_stats"))["total"] == 4
            return res["file"], ids

    file, ids = run_async(phase1)
    lines = Path(file).read_bytes().splitlines()
    header = orjson.loads(lines[0])
    assert header["format"] == "clarity-backup" and header["dims"] == 384 and len(lines) == 4
    assert all(len(orjson.loads(line)["vector"]) == 384 for line in lines[1:])
    res = orjson.loads(cli(home, "restore", file, "--json").stdout)
    assert res["restored"] == 3
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
    proc = cli(home, "restore", str(bad), check=False)
    assert proc.returncode == 2 and "nothing restored" in proc.stderr
    not_backup = tmp_path / "x.jsonl"
    not_backup.write_text("hello\n")
    proc = cli(home, "restore", str(not_backup), check=False)
    assert proc.returncode == 2 and "not a clarity backup" in proc.stderr
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert [m["content"] for m in listed["memories"]] == ["keep me"]
    assert not (home / "qdrant" / "edge.next").exists()
