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
    assert "exported 2" in cli(home, "export", "--out", str(dump)).stdout
    assert dump.stat().st_mode & 0o777 == 0o600  # every memory is in it: yours only
    assert orjson.loads(cli(home, "export", "--out", str(dump), "--json").stdout) == {"file": str(dump), "count": 2}
    assert "exported 2" in cli(home, "export", str(dump)).stdout  # the older positional form
    # stdout by default: the export itself, nothing else, so it pipes
    piped = cli(home, "export")
    assert orjson.loads(piped.stdout) == orjson.loads(dump.read_bytes()) and piped.stderr == ""
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


def _store(home: Path, text: str, *args: str) -> str:
    return str(orjson.loads(cli(home, "store", text, "--json", *args).stdout)["id"])


def test_global_options_before_or_after_the_command(home: Path) -> None:
    import subprocess
    import sys

    mid = _store(home, "global options go anywhere")
    before = subprocess.run([sys.executable, "-m", "clarity", "--home", str(home), "--json", "list"],
                            capture_output=True, text=True, timeout=120, check=True)
    after = cli(home, "list", "--json")  # cli() puts --home last
    mixed = subprocess.run([sys.executable, "-m", "clarity", "--json", "list", "--home", str(home)],
                           capture_output=True, text=True, timeout=120, check=True)
    for proc in (before, after, mixed):
        assert [m["id"] for m in orjson.loads(proc.stdout)["memories"]] == [mid]


def test_get_update_delete(home: Path) -> None:
    mid = _store(home, "Use black for formatting", "--type", "decision", "--tag", "style")
    got = orjson.loads(cli(home, "get", mid, "--json").stdout)
    assert got["id"] == mid and got["content"] == "Use black for formatting" and got["tags"] == ["style"]
    text = cli(home, "get", mid).stdout
    assert "Use black for formatting" in text and "[decision]" in text
    upd = orjson.loads(cli(home, "update", mid, "--content", "Use ruff format", "--importance", "0.9", "--tag", "a",
                           "--tag", "b", "--type", "fact", "--json").stdout)
    assert set(upd) == {"id", "updated_fields", "reembedded", "updated_at"}
    assert sorted(upd["updated_fields"]) == ["content", "importance", "memory_type", "tags"] and upd["reembedded"]
    got = orjson.loads(cli(home, "get", mid, "--json").stdout)
    assert (got["content"], got["importance"], got["tags"], got["memory_type"]) == ("Use ruff format", 0.9,
                                                                                    ["a", "b"], "fact")
    assert orjson.loads(cli(home, "search", "ruff format", "--json").stdout)["memories"][0]["id"] == mid
    nothing = cli(home, "update", mid, check=False)
    assert nothing.returncode == 2 and "nothing to update" in nothing.stderr
    bad = cli(home, "update", mid, "--importance", "7", check=False)
    assert bad.returncode == 2 and "importance" in bad.stderr and "Traceback" not in bad.stderr
    assert orjson.loads(cli(home, "get", mid, "--json").stdout)["importance"] == 0.9  # unchanged
    unknown = "00000000-0000-4000-8000-000000000000"
    gone = cli(home, "delete", mid, unknown, "--json", check=False)
    assert gone.returncode == 1 and orjson.loads(gone.stdout) == {"deleted": [mid], "not_found": [unknown]}
    missing = cli(home, "get", mid, check=False)
    assert missing.returncode == 1 and f"no memory with id {mid}" in missing.stderr
    assert cli(home, "get", "not-an-id", check=False).returncode == 2


def test_list_and_search_filters(home: Path) -> None:
    a = _store(home, "The staging database is reset every night", "--type", "fact", "--tag", "db")
    b = _store(home, "Nightly jobs reset the cache too", "--type", "note", "--tag", "ops")

    def ids(*args: str) -> list[str]:
        return [m["id"] for m in orjson.loads(cli(home, *args, "--json").stdout)["memories"]]

    assert ids("list") == [b, a]
    assert ids("list", "--type", "fact") == [a] and ids("list", "--tag", "ops") == [b]
    assert ids("list", "--type", "fact", "--type", "note") == [b, a]
    assert ids("search", "reset every night", "--type", "note") == [b]
    assert ids("search", "reset every night", "--tag", "db") == [a]
    for cmd in (("list",), ("search", "reset")):
        assert set(ids(*cmd, "--since", "1h")) == {a, b}
        assert ids(*cmd, "--until", "1h") == []
        assert ids(*cmd, "--since", "2000-01-01", "--until", "2000-01-02") == []
    created_b = orjson.loads(cli(home, "get", b, "--json").stdout)["created_at"]
    created_a = orjson.loads(cli(home, "get", a, "--json").stdout)["created_at"]
    assert ids("list", "--since", created_b) == [b] and ids("list", "--until", created_a) == [a]
    window = orjson.loads(cli(home, "list", "--since", "1h", "--limit", "1", "--offset", "1", "--json").stdout)
    assert window["total"] == 2 and [m["id"] for m in window["memories"]] == [a]
    bad = cli(home, "list", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "since" in bad.stderr and "Traceback" not in bad.stderr


def test_every_argument_has_help_and_shows_its_default() -> None:
    import argparse

    from clarity.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) >= {"get", "update", "delete", "list", "search", "export", "restore", "demo"}
    for name, sp in sub.choices.items():
        text = sp.format_help()
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            has_default = action.default is not None and action.default is not False \
                and action.default != argparse.SUPPRESS
            if has_default:  # e.g. --limit 5, --offset 0, --mode hybrid, --timeout 60.0
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)
        assert "--home" in text and "--json" in text, name


def test_json_keys_are_the_same_with_or_without_a_store(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty", tmp_path / "full"
    _store(full, "a memory for the keys")
    for args in (("list",), ("search", "memory"), ("status",), ("context",), ("stats",), ("doctor",)):
        without = orjson.loads(cli(empty, *args, "--json").stdout)
        with_store = orjson.loads(cli(full, *args, "--json").stdout)
        assert set(without) == set(with_store), (args, set(without) ^ set(with_store))
    assert orjson.loads(cli(empty, "status", "--json").stdout)["store_exists"] is False
    assert orjson.loads(cli(full, "status", "--json").stdout)["store_exists"] is True
    assert not empty.exists()  # reading made nothing


def test_import_checks_everything_first_and_shows_progress_only_on_a_terminal(home: Path, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    good = [{"id": f"00000000-0000-4000-8000-{i:012d}", "content": f"imported memory number {i}"}
            for i in range(300)]
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"memories": [*good[:280], {"id": good[280]["id"], "content": ""}, *good[281:]]}))
    refused = cli(home, "import", str(bad), check=False)
    assert refused.returncode == 2 and "memory 281" in refused.stderr and "nothing imported" in refused.stderr
    assert not home.exists()  # refused before anything was made

    dump = tmp_path / "good.json"
    dump.write_bytes(orjson.dumps({"memories": good}))
    piped = cli(home, "import", str(dump))
    assert "imported 300" in piped.stdout and piped.stderr == ""  # piped: no progress at all
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "clarity", "import", str(dump), "--home", str(home)],
                              stdout=subprocess.PIPE, stderr=secondary, text=True, timeout=120)
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0 and "skipped 300 already present" in proc.stdout
    assert b"importing" in shown  # rich drew its bar on the terminal


def test_restore_asks_before_replacing_memories(home: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    kept = _store(home, "the only memory of the backup")
    backup = orjson.loads(cli(home, "backup", "--json").stdout)["file"]
    later = _store(home, "stored after the backup")
    refused = cli(home, "restore", backup, check=False)  # no terminal to ask on, no --yes
    assert refused.returncode == 2 and "add --yes" in refused.stderr and "holds 2 memories" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    def answered(answer: bytes) -> subprocess.CompletedProcess[str]:
        primary, secondary = pty.openpty()
        try:
            os.write(primary, answer)
            return subprocess.run([sys.executable, "-m", "clarity", "restore", backup, "--home", str(home)],
                                  stdin=secondary, capture_output=True, text=True, timeout=120)
        finally:
            os.close(primary)
            os.close(secondary)

    no = answered(b"n\n")
    assert no.returncode == 1 and "Replace them? [y/N]" in no.stderr and "nothing restored" in no.stderr
    assert {m["id"] for m in orjson.loads(cli(home, "list", "--json").stdout)["memories"]} == {kept, later}
    yes = answered(b"y\n")
    assert yes.returncode == 0 and "restored 1 memories" in yes.stdout, yes.stderr
    assert [m["id"] for m in orjson.loads(cli(home, "list", "--json").stdout)["memories"]] == [kept]
    forced = orjson.loads(cli(home, "restore", backup, "--yes", "--json").stdout)
    assert forced["restored"] == 1 and forced["replaced"] == 1


def test_restore_says_which_session_it_waits_for(home: Path) -> None:
    from tests.conftest import open_sessions, run_async

    _store(home, "in the backup")
    backup = orjson.loads(cli(home, "backup", "--json").stdout)["file"]

    async def scenario() -> None:
        async with open_sessions(home, 1) as (s,):
            await s.call("store_memory", {"content": "the session owns the store"})
            owner = (await s.call("coordination_status"))["this_process"]["pid"]
            busy = cli(home, "restore", backup, "--yes", "--timeout", "1", check=False)
            lines = busy.stderr.strip().splitlines()
            assert busy.returncode == 2 and "Traceback" not in busy.stderr, busy.stderr
            assert any(f"waiting up to 1 s for pid {owner}" in line for line in lines), busy.stderr
            assert "in use" in lines[-1], busy.stderr
            assert (await s.call("memory_stats"))["total"] == 2

    run_async(scenario)


def test_the_log_rotates(home: Path) -> None:
    from clarity.cli import LOG_BACKUPS, LOG_MAX_BYTES

    cli(home, "store", "makes the store and its log")
    log = home / "logs" / "clarity.log"
    for n in range(1, LOG_BACKUPS + 1):
        (home / "logs" / f"clarity.log.{n}").write_text(f"old {n}\n")
    log.write_bytes(b"x" * LOG_MAX_BYTES)  # full: the next record rotates it
    cli(home, "store", "a record after the log filled up")
    assert log.stat().st_size < 100_000 and "lease" in log.read_text()
    assert (home / "logs" / "clarity.log.1").stat().st_size == LOG_MAX_BYTES
    assert (home / "logs" / f"clarity.log.{LOG_BACKUPS}").read_text() == f"old {LOG_BACKUPS - 1}\n"
    assert not (home / "logs" / f"clarity.log.{LOG_BACKUPS + 1}").exists()  # the oldest was dropped
    assert log.stat().st_mode & 0o777 == 0o600  # the new log is this user's only, like the first
