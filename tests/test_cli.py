"""The CLI for people at a terminal: real subprocesses."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.conftest import cli


def test_store_search_list_stats(home: Path) -> None:
    out = cli(home, "store", "The staging database is reset every night", "--type", "fact", "--json")
    stored = orjson.loads(out.stdout)
    assert stored["stored"] and stored["duplicate_of"] is None and stored["created_at"]
    assert "memory" not in stored  # the reply says what happened; get_memory returns the memory
    assert "stored:" in cli(home, "store", "Use black for Python formatting").stdout
    assert "already stored" in cli(home, "store", "Use black for Python formatting").stdout
    found = orjson.loads(cli(home, "search", "when is staging wiped", "--json").stdout)
    assert found["memories"][0]["id"] == stored["id"]
    assert "staging database" in cli(home, "search", "when is staging wiped").stdout
    listed = orjson.loads(cli(home, "list", "--json").stdout)
    assert listed["total"] == 2
    stats = orjson.loads(cli(home, "stats", "--json").stdout)
    assert stats["by_type"] == {"fact": 1, "note": 1}
    assert "2 memories" in cli(home, "stats").stdout
    st = orjson.loads(cli(home, "status", "--json").stdout)
    assert st["owner"] is None and st["this_process"]["role"] == "observer"


def test_export_import(home: Path, tmp_path: Path) -> None:
    cli(home, "store", "exported memory one")
    cli(home, "store", "exported memory two")
    dump = tmp_path / "dump.json"
    assert "exported 2" in cli(home, "export", str(dump)).stdout
    other = tmp_path / "other"
    assert "imported 2" in cli(other, "import", str(dump)).stdout
    assert orjson.loads(cli(other, "list", "--json").stdout)["total"] == 2


def test_errors_are_clear_and_go_to_stderr(home: Path) -> None:
    bad = cli(home, "store", "", check=False)
    assert bad.returncode == 2 and "content must not be empty" in bad.stderr and bad.stdout == ""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text('{"memory": {"max_content_bytes": "big"}}')
    bad = cli(home, "list", check=False)
    assert bad.returncode == 2
    assert "memory.max_content_bytes" in bad.stderr and "config.json" in bad.stderr


def test_python_dash_m_and_version(home: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "clarity", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("clarity ")



def test_one_shot_commands_load_only_what_they_use(home: Path, tmp_path: Path) -> None:
    """Regression: one-shot commands started a model warm-up thread that was still inside onnxruntime
    when the interpreter exited (SIGABRT on a busy machine). A command that needs no embedding never
    loads the model, and close() leaves no thread of ours running."""
    import threading
    import time

    from clarity.config import load_settings
    from clarity.coordination.coordinator import Coordinator

    cli(home, "store", "a memory so the store exists")
    coordinator = Coordinator(load_settings(home))
    try:
        assert coordinator.call("list", {"limit": 5})["total"] == 1
        time.sleep(3)  # the old warm-up thread loaded the model within this
        svc = coordinator._service
        assert svc is not None and not svc.embedder.loaded
    finally:
        coordinator.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("clarity-")]
    for args in (("list",), ("stats",), ("export", str(tmp_path / "d.json")), ("search", "memory")):
        proc = cli(home, *args, check=False)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr[-500:])
