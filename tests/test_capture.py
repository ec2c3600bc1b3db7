"""Session capture: `clarity hook <event>` reads a Claude Code transcript and stores one `session` digest,
with no model call, through the coordination layer, while real `clarity serve` sessions run.

The transcripts (tests/fixtures/transcripts/) are written in Claude Code's JSONL format (see
clarity.capture.transcript for what was checked against what). The hook runs as a real process with the
hook's JSON on stdin, as Claude Code runs it; a later `retrieve_memory` over MCP finds the digest by what
the user asked and by a changed file's name. Measured: the hook's return time while 4 MCP sessions store
without pause (printed; `-s` shows it), bounded by its deadline; and a hook facing a hung owner still
returns by its deadline, exit 0, nothing on stdout.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from clarity.capture.digest import build_digest
from clarity.capture.transcript import parse_lines, read_transcript
from clarity.cli.hooks import DEFAULT_DEADLINE_S, WATCHDOG_GRACE_S
from tests.harness.processes import cont, owner_pid, stop

from .conftest import cli, open_sessions, run_async

FIXTURES = Path(__file__).parent / "fixtures" / "transcripts"
BASIC, COMPACTED = FIXTURES / "basic.jsonl", FIXTURES / "compacted.jsonl"
BASIC_ID = "5d0c2a7e-3f4b-4c1e-9a8d-2b6f1e0c7a91"
COMPACTED_ID = "8e41b0f2-77c9-4a55-b1d3-0f9e6a2c4d18"


def hook(home: Path | None, event: str, payload: dict[str, Any] | bytes | None, *extra: str,
         cwd: Path | None = None, timeout: float = 120) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """Run `clarity hook EVENT` as Claude Code does (JSON on stdin); the finished process and its wall time."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload is not None else b""
    cmd = [sys.executable, "-m", "clarity", "hook", event, *extra]
    if home is not None:
        cmd += ["--home", str(home)]
    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "CLAUDE_PROJECT_DIR"}
    ran = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, cwd=cwd, env=env)
    return ran, time.monotonic() - t0


def payload(session: str, transcript: Path, event: str, **extra: Any) -> dict[str, Any]:
    return {"session_id": session, "transcript_path": str(transcript), "cwd": str(transcript.parent),
            "hook_event_name": event, "permission_mode": "default", **extra}


# ---- the transcript and the digest, in process --------------------------------------------------------

def test_the_transcript_gives_prompts_changes_fixed_commands_and_the_last_message() -> None:
    rec = read_transcript(BASIC)
    assert rec.session_id == BASIC_ID and rec.git_branch == "fix-csv-quoting" and rec.version == "2.1.332"
    assert len(rec.prompts) == 2  # not the /clear command, the caveat (meta), tool results or the interruption
    assert rec.prompts[0].startswith("The importer in ledger/ingest.py") and "README" in rec.prompts[1]
    # the failed Edit and the subagent's Write are not changes; Write, Edit (twice) and MultiEdit are
    assert [(c.path.rsplit("/", 1)[-1], c.tool_uses) for c in rec.changed.values()] == \
        [("test_ingest.py", 1), ("ingest.py", 2), ("README.md", 1)]
    assert rec.fixed_commands == ["python -m pytest tests/test_ingest.py -q"]  # whitespace-normalised match
    assert rec.failed_commands == ["ruff check ledger"]
    assert rec.last_message.startswith("Done. parse_row now uses csv.reader")
    assert rec.started_at == "2026-11-30T09:00:00.000Z" and rec.ended_at == "2026-11-30T09:01:10.000Z"

    digest = build_digest(rec, session_id=BASIC_ID, event="Stop", max_bytes=32 * 1024)
    assert "hunter2" not in digest.content and "private" not in digest.content
    assert "- ledger/ingest.py (2 edits)" in digest.content and "Commands that failed, then passed:" in digest.content
    assert digest.tags == ["session-digest", "claude-code", "test_ingest.py", "ingest.py", "README.md"]
    assert digest.metadata["changed_files"] == ["tests/test_ingest.py", "ledger/ingest.py", "README.md"]
    again = build_digest(read_transcript(BASIC), session_id=BASIC_ID, event="SessionEnd", max_bytes=32 * 1024)
    assert again.content == digest.content  # the event is metadata: the same transcript, the same text


def test_the_compaction_summary_and_only_this_sessions_title_are_kept() -> None:
    rec = read_transcript(COMPACTED)
    assert rec.skipped_lines == 1  # the line being written
    assert len(rec.compact_summaries) == 1 and rec.titles == ["Retry logic for the payments webhook"]
    assert rec.prompts == ["Add exponential backoff to the payments webhook retry in billing/webhooks.py; the "
                           "provider rate limits us at 10 requests a second.",
                           "Now wire the dead-letter table into the admin page."]
    digest = build_digest(rec, session_id=COMPACTED_ID, event="PreCompact", max_bytes=32 * 1024)
    assert "full jitter" in digest.content and "This session is being continued" not in digest.content
    assert "fonts" not in digest.content
    # PostCompact's input carries the new summary before the transcript has it
    post = build_digest(rec, session_id=COMPACTED_ID, event="PostCompact", max_bytes=32 * 1024,
                        compact_summary="This session is being continued from a previous conversation.\nSecond "
                                        "summary: the admin page is done.")
    assert "Second summary: the admin page is done." in post.content and "full jitter" not in post.content


def test_a_huge_session_fits_the_size_limit_and_keeps_its_shape() -> None:
    lines = []
    for i in range(3000):
        lines.append(orjson.dumps({"type": "user", "sessionId": "s", "timestamp": f"2026-01-01T00:00:{i % 60:02d}Z",
                                   "message": {"role": "user", "content": f"prompt {i} " + "word " * 400}}))
        lines.append(orjson.dumps({"type": "assistant", "message": {"id": f"m{i}", "role": "assistant", "content": [
            {"type": "tool_use", "id": f"t{i}", "name": "Write", "input": {"file_path": f"/p/dir{i}/file_{i}.py"}}]}}))
        lines.append(orjson.dumps({"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"}]}}))
    rec = parse_lines(lines)
    assert len(rec.prompts) == 3000 and len(rec.changed) == 3000
    for limit in (400, 2000, 32 * 1024, 200_000):
        d = build_digest(rec, session_id="s", event="Stop", max_bytes=limit, last_message="x" * 100_000,
                         compact_summary="summary " * 50_000)
        size = len(d.content.encode())
        assert size <= limit, (limit, size)
        assert d.content.startswith("Claude Code session s") and len(d.tags) <= 32
        assert len(orjson.dumps(d.metadata)) < 64 * 1024
    assert "prompt 0 " in build_digest(rec, session_id="s", event="Stop", max_bytes=32 * 1024).content


# ---- the hook as Claude Code runs it, with sessions running ---------------------------------------------

async def _retrieve(session: Any, query: str, **args: Any) -> list[dict[str, Any]]:
    res = await session.call("retrieve_memory", {"query": query, "limit": 5, "include_metadata": True, **args})
    return res["memories"]  # type: ignore[no-any-return]


def test_stop_and_pre_compact_store_digests_that_a_later_session_finds(home: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 2, logdir=tmp_path) as (s1, s2):
            for text in ("The staging deploy runs from the release-2 branch", "Use ruff for linting, never flake8",
                         "The CSV exports of the billing module are UTF-8 with a BOM for Excel"):
                await s1.call("store_memory", {"content": text, "memory_type": "decision"})

            ran, took = hook(home, "stop", payload(BASIC_ID, BASIC, "Stop"))
            assert ran.returncode == 0 and ran.stdout == b"", ran.stderr
            print(f"[hook stop] returned in {took:.2f} s while 2 sessions run")

            # by what the user asked
            hits = await _retrieve(s2, "make the CSV importer handle quoted commas in a field")
            assert hits and hits[0]["memory_type"] == "session", hits
            digest = hits[0]
            assert digest["session"] == BASIC_ID and digest["origin"] == "hook" and digest["origin_detail"] == "Stop"
            assert digest["metadata"]["git_branch"] == "fix-csv-quoting" and "created_at" in digest
            assert "session-digest" in digest["tags"]
            # by a changed file's name
            hits = await _retrieve(s2, "test_ingest.py")
            assert digest["id"] in [h["id"] for h in hits[:3]], hits

            ran, _ = hook(home, "pre-compact", payload(COMPACTED_ID, COMPACTED, "PreCompact", trigger="auto",
                                                       custom_instructions=None))
            assert ran.returncode == 0 and ran.stdout == b"", ran.stderr
            hits = await _retrieve(s1, "dead-letter table for failed payment webhooks")
            assert hits and hits[0]["session"] == COMPACTED_ID and "full jitter" in hits[0]["content"], hits
            assert hits[0]["origin_detail"] == "PreCompact" and hits[0]["metadata"]["trigger"] == "auto"

            # the same transcript again (SessionEnd after Stop): no second memory
            ran, _ = hook(home, "session-end", payload(BASIC_ID, BASIC, "SessionEnd", reason="other"))
            assert ran.returncode == 0 and ran.stdout == b""
            listed = await s1.call("list_memories", {"types": ["session"], "sessions": [BASIC_ID]})
            assert [m["id"] for m in listed["memories"]] == [digest["id"]]

            # the session went on: a new digest supersedes the old one
            longer = tmp_path / "longer.jsonl"
            shutil.copy(BASIC, longer)
            with longer.open("a") as f:
                f.write(json.dumps({"type": "user", "sessionId": BASIC_ID, "timestamp": "2026-11-30T09:05:00.000Z",
                                    "message": {"role": "user", "content": "Now remove the unused os import."}}) + "\n")
            ran, _ = hook(home, "stop", payload(BASIC_ID, longer, "Stop"))
            assert ran.returncode == 0 and ran.stdout == b"", ran.stderr
            listed = await s2.call("list_memories", {"types": ["session"], "sessions": [BASIC_ID],
                                                     "include_content": True})
            (newest,) = listed["memories"]
            assert newest["id"] != digest["id"] and newest.get("supersedes") == digest["id"]
            assert "remove the unused os import" in newest["content"]
            old = await s2.call("get_memory", {"memory_id": digest["id"]})
            assert old["superseded_by"] == newest["id"]

        raw = cli(home, "export").stdout
        assert "hunter2" not in raw and "<private>" not in raw  # the prompt's private part never stored

    run_async(main)


def test_the_hook_returns_within_its_bound_while_four_sessions_store(home: Path, tmp_path: Path) -> None:
    runs = 6
    stores: list[float] = []
    took: list[float] = []
    results: list[subprocess.CompletedProcess[bytes]] = []

    def transcript(i: int) -> Path:
        path = tmp_path / f"t{i}.jsonl"
        shutil.copy(BASIC, path)
        with path.open("a") as f:
            f.write(json.dumps({"type": "user", "sessionId": BASIC_ID, "message": {
                "role": "user", "content": f"follow-up request number {i}"}}) + "\n")
        return path

    async def writer(session: Any, n: int, done: anyio.Event) -> None:
        i = 0
        while not done.is_set():
            t0 = time.monotonic()
            await session.call("store_memory", {"content": f"load memory {n}-{i} {time.time_ns()}"})
            stores.append(time.monotonic() - t0)
            i += 1

    async def main() -> None:
        async with open_sessions(home, 4) as sessions:
            await sessions[0].call("store_memory", {"content": "warm the owner"})
            idle, idle_took = await anyio.to_thread.run_sync(
                lambda: hook(home, "stop", payload(BASIC_ID, BASIC, "Stop")))
            assert idle.returncode == 0, idle.stderr
            done = anyio.Event()
            async with anyio.create_task_group() as tg:
                for n, s in enumerate(sessions):
                    tg.start_soon(writer, s, n, done)
                await anyio.sleep(1.0)
                for i in range(runs):
                    data = payload(BASIC_ID, transcript(i), "Stop")
                    ran, t = await anyio.to_thread.run_sync(functools.partial(hook, home, "stop", data, "--verbose"))
                    results.append(ran)
                    took.append(t)
                done.set()
            listed = await sessions[1].call("list_memories", {"types": ["session"], "sessions": [BASIC_ID]})
            assert listed["total"] == 1  # every run superseded the one before
            print(f"[hook under load] idle (owner warm, no writers): {idle_took:.2f} s; with 4 sessions storing: "
                  f"min {min(took):.2f} s, median {statistics.median(took):.2f} s, max {max(took):.2f} s over "
                  f"{runs} runs; the sessions stored {len(stores)} memories meanwhile, median store "
                  f"{statistics.median(stores) * 1000:.1f} ms, max {max(stores) * 1000:.1f} ms")

    run_async(main)
    for ran in results:
        assert ran.returncode == 0 and ran.stdout == b"", ran.stderr
        assert b"stored digest" in ran.stderr, ran.stderr
    assert max(took) < DEFAULT_DEADLINE_S + WATCHDOG_GRACE_S


def test_a_hung_owner_costs_the_hook_its_deadline_not_more(home: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 1) as (s,):
            await s.call("store_memory", {"content": "the owner holds the store"})
            pid = owner_pid(await s.call("coordination_status"))
            assert pid is not None
            stop(pid)  # SIGSTOP: alive, holding the lease, answering nothing
            try:
                ran, took = await anyio.to_thread.run_sync(
                    lambda: hook(home, "stop", payload(BASIC_ID, BASIC, "Stop"), "--deadline", "2"))
            finally:
                cont(pid)
            print(f"[hook, hung owner] returned in {took:.2f} s with --deadline 2")
            assert ran.returncode == 0 and ran.stdout == b"", ran.stderr
            assert took < 2 + WATCHDOG_GRACE_S + 2.0, took  # + the interpreter's start
            assert ran.stderr.strip(), "the reason is said on stderr"
            listed = await s.call("list_memories", {"types": ["session"]})
            assert listed["total"] in (0, 1)  # an outcome the owner may still apply (a retry is idempotent)

    run_async(main)


@pytest.mark.parametrize("case", ["no store", "not json", "empty stdin", "no transcript", "missing transcript",
                                  "fifo transcript", "bad session id", "transcript of nothing"])
def test_a_hook_that_cannot_capture_exits_0_silently_with_the_reason(tmp_path: Path, case: str) -> None:
    home = tmp_path / "home"
    if case != "no store":
        cli(home, "store", "a store exists")
    fifo = tmp_path / "pipe.jsonl"
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"type":"file-history-snapshot","messageId":"x","snapshot":{}}\n')
    cases: dict[str, dict[str, Any] | bytes] = {
        "no store": payload(BASIC_ID, BASIC, "Stop"), "not json": b"{not json", "empty stdin": b"",
        "no transcript": {"session_id": BASIC_ID, "hook_event_name": "Stop"},
        "missing transcript": payload(BASIC_ID, tmp_path / "gone.jsonl", "Stop"),
        "fifo transcript": payload(BASIC_ID, fifo, "Stop"),
        "bad session id": payload("line\nbreak", BASIC, "Stop"),
        "transcript of nothing": payload(BASIC_ID, empty, "Stop"),
    }
    data = cases[case]
    if case == "fifo transcript":
        os.mkfifo(fifo)
    ran, took = hook(home, "stop", data, timeout=60)
    assert ran.returncode == 0 and ran.stdout == b"", (ran.returncode, ran.stdout, ran.stderr)
    assert ran.stderr.startswith(b"clarity"), ran.stderr
    assert b"Traceback" not in ran.stderr, ran.stderr
    assert took < DEFAULT_DEADLINE_S + WATCHDOG_GRACE_S
    if case == "no store":
        assert not home.exists()  # nothing created
    else:
        res = orjson.loads(cli(home, "list", "--json", "--type", "session").stdout)
        assert res["total"] == 0


def test_the_home_follows_the_sessions_folder(tmp_path: Path) -> None:
    """Without --home the hook uses the store of the session's `cwd`, as the session's server does."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    home = project / ".claude" / "alunai-clarity"
    cli(home, "store", "a store exists")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = payload(BASIC_ID, BASIC, "Stop")
    data["cwd"] = str(project)
    ran, _ = hook(None, "stop", data, cwd=elsewhere)
    assert ran.returncode == 0 and ran.stdout == b"", ran.stderr
    res = orjson.loads(cli(home, "list", "--json", "--type", "session").stdout)
    assert res["total"] == 1


# ---- the real Claude Code CLI writes the transcript and runs the hooks ---------------------------------

class ScriptedModel:
    """The model's API for an offline Claude Code session: answers `POST /v1/messages` with the next step
    of `steps` (by how many assistant turns the request already holds), streamed as the Messages API streams
    (server-sent events); a request that asks for a summary (a compaction) gets `SUMMARY`. Everything else
    in the test is real: the CLI, its transcript, its hook runner, `clarity hook`, the store."""

    SUMMARY = ("<analysis>The user asked for a CSV importer.</analysis>\n<summary>Compacted: the CSV importer keeps "
               "quoted commas together; ledger/VERSION holds the version.</summary>")

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.write(model.answer(body))

        self.steps = steps
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        import threading
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: dict[str, Any]) -> bytes:
        messages = body.get("messages") or []
        asked = json.dumps(messages[-1])[-4000:].lower() if messages else ""
        tools = [t.get("name") for t in body.get("tools") or []]
        if "Bash" in tools and "summary" not in asked:
            step = self.steps[min(sum(m["role"] == "assistant" for m in messages), len(self.steps) - 1)]
        else:
            step = {"text": self.SUMMARY}
        block: dict[str, Any]
        delta: dict[str, Any]
        if "text" in step:
            block, delta, stop_reason = ({"type": "text", "text": ""}, {"type": "text_delta", "text": step["text"]},
                                         "end_turn")
        else:
            block = {"type": "tool_use", "id": f"toolu_{uuid_hex()}", "name": step["tool"], "input": {}}
            delta, stop_reason = {"type": "input_json_delta", "partial_json": json.dumps(step["input"])}, "tool_use"
        events = [("message_start", {"type": "message_start", "message": {
                      "id": f"msg_{uuid_hex()}", "type": "message", "role": "assistant", "model": body.get("model"),
                      "content": [], "stop_reason": None, "stop_sequence": None,
                      "usage": {"input_tokens": 10, "output_tokens": 1}}}),
                  ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
                  ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
                  ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                  ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                                         "stop_sequence": None},
                                     "usage": {"output_tokens": 5}}),
                  ("message_stop", {"type": "message_stop"})]
        return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def uuid_hex() -> str:
    import uuid
    return uuid.uuid4().hex[:24]


def _claude() -> tuple[Path | None, str]:
    from tests.test_claude_plugin import CLAUDE, VERSION_OR_REASON
    return CLAUDE, VERSION_OR_REASON


def test_a_real_claude_code_session_runs_the_hooks_and_its_digest_is_found(tmp_path: Path) -> None:
    import shlex

    claude, version = _claude()
    if claude is None:
        pytest.skip(version)
    project = tmp_path / "project"
    (project / "ledger").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=60)
    home = project / ".claude" / "alunai-clarity"
    events = {"Stop": "stop", "SessionEnd": "session-end", "PreCompact": "pre-compact", "PostCompact": "post-compact"}
    hooks = {name: [{"hooks": [{"type": "command", "timeout": 30, "command": " ".join(
        shlex.quote(a) for a in (sys.executable, "-m", "clarity", "hook", event, "--home", str(home), "--verbose"))}]}]
        for name, event in events.items()}
    (project / ".claude").mkdir(exist_ok=True)
    (project / ".claude" / "settings.json").write_text(json.dumps({"hooks": hooks}))
    code = "import csv\n\ndef parse_row(line):\n    return next(csv.reader([line]))\n"
    steps: list[dict[str, Any]] = [
             {"tool": "Write", "input": {"file_path": str(project / "ledger" / "ingest.py"), "content": code}},
             {"tool": "Bash", "input": {"command": "cat ledger/VERSION", "description": "read the version"}},
             {"tool": "Write", "input": {"file_path": str(project / "ledger" / "VERSION"), "content": "1.4.0\n"}},
             {"tool": "Bash", "input": {"command": "cat ledger/VERSION", "description": "read it again"}},
             {"text": "Done: ledger/ingest.py parses quoted commas with csv.reader; ledger/VERSION says 1.4.0."}]
    prompt = "Write a CSV importer that keeps quoted commas together. My token is <private>tok-9431</private>."
    model = ScriptedModel(steps)
    user_home = tmp_path / "home"
    user_home.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(user_home), "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "ANTHROPIC_BASE_URL": model.url,
           "ANTHROPIC_API_KEY": "sk-test-not-a-key", "CLAUDE_CODE_MAX_RETRIES": "0",
           **{k: v for k, v in os.environ.items() if k.startswith("CLARITY_")}}

    def run(*args: str) -> list[dict[str, Any]]:
        ran = subprocess.run([str(claude), *args, "--output-format", "stream-json", "--verbose",
                              "--include-hook-events"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=300)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        return [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]

    async def main() -> None:
        cli(home, "store", "the project's store exists")
        async with open_sessions(home, 1) as (s,):
            out = await anyio.to_thread.run_sync(lambda: run("-p", prompt, "--allowedTools", "Bash Write Edit",
                                                              "--max-turns", "10"))
            session_id = next(e["session_id"] for e in out if e.get("session_id"))
            compacted = await anyio.to_thread.run_sync(lambda: run("-p", "/compact", "--resume", session_id))
            ran = [e for e in out + compacted if e.get("subtype") == "hook_response"]
            print(f"[claude {version}] hook events: " + ", ".join(f"{e['hook_event']} exit {e['exit_code']}: "
                                                                  f"{e['stderr'].strip()}" for e in ran))
            assert "Stop" in {e["hook_event"] for e in ran}, ran  # /compact's run reports no hook events
            assert all(e["exit_code"] == 0 and e["stdout"] == "" for e in ran), ran
            logged = [line.split("clarity.hook: ", 1)[1] for line in
                      (home / "logs" / "clarity.log").read_text().splitlines() if "clarity.hook: " in line]
            print(f"[claude {version}] the hooks' log lines:\n" + "\n".join(logged))
            for event in ("Stop", "PreCompact", "PostCompact"):
                assert any(line.startswith(f"hook {event}, session {session_id}: ") for line in logged), logged

            # the transcript Claude Code wrote, read as the hook reads it
            (path,) = (user_home / ".claude" / "projects").glob(f"*/{session_id}.jsonl")
            rec = read_transcript(path)
            assert rec.prompts == [prompt] and rec.fixed_commands == ["cat ledger/VERSION"], rec
            assert [Path(p).name for p in rec.changed] == ["ingest.py", "VERSION"] and rec.git_branch
            assert rec.last_message.startswith("Done: ledger/ingest.py") and len(rec.compact_summaries) == 1

            hits = await _retrieve(s, "CSV importer that keeps quoted commas together")
            assert hits and hits[0]["session"] == session_id and hits[0]["memory_type"] == "session", hits
            assert "ingest.py" in hits[0]["tags"]
            listed = await s.call("list_memories", {"types": ["session"], "sessions": [session_id],
                                                    "include_content": True})
            (digest,) = listed["memories"]  # one current digest; the earlier ones superseded
            assert "Compacted: the CSV importer keeps quoted commas together" in digest["content"], digest
            for left_out in ("tok-9431", "Continue the conversation", "<analysis>", "<summary>"):
                assert left_out not in digest["content"], (left_out, digest["content"])
            print(f"[claude {version}] the session's digest:\n{digest['content']}")

    try:
        run_async(main)
    finally:
        model.close()
