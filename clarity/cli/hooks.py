"""`clarity hook <event>`: Claude Code's lifecycle hooks (Stop, SessionEnd, PreCompact, PostCompact) store a
digest of the session (clarity.capture) as one `session` memory, with no model call of their own.

Claude Code runs the command with the hook's JSON on stdin (`session_id`, `transcript_path`, `cwd`,
`hook_event_name`, and per event `last_assistant_message` (Stop), `compact_summary` (PostCompact),
`trigger`, `reason`) and waits for it. So, whatever happens:
- it exits 0 and writes nothing on stdout (fd 1 goes to /dev/null first: Claude Code injects what some
  hooks print, and exit 2 would feed stderr to the model); the reason of a failure or a skip is one line
  on stderr (Claude Code shows it in verbose mode) and in the store's log file;
- it ends within `--deadline` seconds (default `DEFAULT_DEADLINE_S`) of its start: every coordinator
  call gets the time left as its deadline (`coordination.call_deadline_s`), and a watchdog ends the
  process (exit 0) `WATCHDOG_GRACE_S` after the deadline should an operation that had already started
  here outlast it (a killed process loses nothing acknowledged: the store's durability contract);
- it goes through the coordination layer like every command (forwarded to the session that owns the
  store; owning it only when no session does), so it works while sessions run and never opens the store
  behind their back; a project with no store yet is left alone (nothing is created).

What it stores: the digest (clarity.capture.digest) of the transcript, type `session`, the session's id
as its `session`, origin `hook` with the event as `origin_detail`, superseding the newest digest of the
same session; nothing when that digest has the same content (a Stop after no new turn, SessionEnd after
Stop), nor when the transcript holds nothing to keep. Two hooks of one session racing (an async Stop and
SessionEnd) may both supersede the same digest: the loser sees "already superseded" and supersedes the
winner's instead (up to `SUPERSEDE_TRIES` times).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from clarity.config import Settings

log = logging.getLogger("clarity.hook")

EVENTS = {"stop": "Stop", "session-end": "SessionEnd", "pre-compact": "PreCompact", "post-compact": "PostCompact"}
DEFAULT_DEADLINE_S = 10.0
WATCHDOG_GRACE_S = 1.0
MAX_INPUT_BYTES = 4 * 1024 * 1024
SUPERSEDE_TRIES = 3
DIGEST_IMPORTANCE = 0.4


class Skip(Exception):
    """Nothing to store, and why (said in the log: not a failure)."""


def _silence_stdout() -> None:
    """Nothing this process writes reaches Claude Code through stdout."""
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _say(text: str) -> None:
    """One line on stderr (before logging is set up, or as well as it)."""
    try:
        sys.stderr.write(f"clarity hook: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _watchdog(seconds: float, event: str) -> threading.Timer:
    def give_up() -> None:
        _say(f"{event}: gave up after {seconds:.1f} s (the hook's deadline); nothing more is done")
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


def read_input(deadline: float, stream: Any = None) -> dict[str, Any]:
    """The hook's JSON object from stdin, read until EOF or the deadline (at most MAX_INPUT_BYTES)."""
    stream = stream if stream is not None else sys.stdin
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError) as e:
        raise Skip("no stdin to read the hook's input from") from e
    if os.isatty(fd):
        raise Skip("stdin is a terminal: Claude Code gives a hook its input as JSON on stdin")
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Skip("the hook's input did not end (EOF) before the deadline")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_INPUT_BYTES:
            raise Skip(f"the hook's input is larger than {MAX_INPUT_BYTES} bytes")
        chunks.append(chunk)
    try:
        data = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as e:
        raise Skip(f"the hook's input is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise Skip("the hook's input is not a JSON object")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _with_deadline(settings: Settings, seconds: float) -> Settings:
    coordination = settings.coordination.model_copy(update={"call_deadline_s": max(0.05, seconds)})
    return settings.model_copy(update={"coordination": coordination})


def _store_digest(settings: Settings, args: dict[str, Any], session: str, deadline: float) -> str:
    """Store the digest `args` through a coordinator, superseding the newest digest of `session`;
    what happened, in words."""
    from clarity.capture.digest import DIGEST_TYPE
    from clarity.coordination.coordinator import Coordinator
    from clarity.errors import InvalidArgument
    from clarity.memory.model import content_hash, new_id

    digest_hash = content_hash(args["content"])
    coordinator = Coordinator(_with_deadline(settings, deadline - time.monotonic()))

    def call(op: str, op_args: dict[str, Any]) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise Skip(f"no time left for the {op} call within the hook's deadline")
        # every call gets the time left as its deadline (the coordinator reads its cfg per call)
        coordinator.cfg = coordinator.cfg.model_copy(update={"call_deadline_s": left})
        return coordinator.call(op, op_args)

    try:
        for _ in range(SUPERSEDE_TRIES):
            listed = call("list", {"types": [DIGEST_TYPE], "sessions": [session], "limit": 1})
            previous = listed["memories"][0] if listed["memories"] else None
            if previous is not None and previous.get("content_hash") == digest_hash:
                return f"unchanged: the session's digest {previous['id']} already says this"
            try:
                res = call("store", {**args, "id": new_id(),
                                     "supersedes": previous["id"] if previous is not None else None})
            except InvalidArgument as e:
                if "already superseded" in e.message:
                    continue  # another hook of this session stored one meanwhile: supersede that one
                raise
            if not res["stored"]:
                return f"unchanged: the same digest is stored as {res['duplicate_of']}"
            again = f", superseding {previous['id']}" if previous is not None else ""
            return f"stored digest {res['id']} ({len(args['content'].encode())} bytes{again})"
        return "not stored: other hooks of this session kept superseding the digest"
    finally:
        coordinator.close()


def _capture(a: argparse.Namespace, event: str, started: float, deadline: float) -> str:
    from clarity.capture.digest import DIGEST_TYPE, build_digest
    from clarity.capture.transcript import read_transcript
    from clarity.cli.logs import setup_logging
    from clarity.cli.store_access import no_store, store_exists
    from clarity.config import load_settings
    from clarity.memory.model import session_name
    from clarity.platform import require_posix

    require_posix()
    os.umask(0o077)
    data = read_input(deadline)
    named = _text(data, "hook_event_name")
    if named and named != event:
        _say(f"the command names the event {event}, its input {named}: stored as {event}")
    cwd = _text(data, "cwd")
    if a.home is None and cwd and os.path.isabs(cwd) and os.path.isdir(cwd):
        os.chdir(cwd)  # the session's project chooses the store, as it does for the session's server
    settings = load_settings(a.home, create=False)
    if not store_exists(settings):
        raise Skip(no_store(settings) + ": nothing captured")
    settings = load_settings(a.home)
    setup_logging(settings, quiet_stderr=True, to_file=True)
    path = _text(data, "transcript_path")
    if not path:
        raise Skip("the hook's input names no transcript_path")
    try:
        rec = read_transcript(Path(path).expanduser())
    except OSError as e:
        raise Skip(f"cannot read the transcript {path}: {e.strerror or e}") from None
    session = _text(data, "session_id") or rec.session_id
    if not session:
        raise Skip("neither the hook's input nor the transcript names the session")
    session_name(session)  # one line, at most 200 characters (InvalidArgument otherwise)
    last, compact = _text(data, "last_assistant_message"), _text(data, "compact_summary")
    if rec.empty and not last.strip() and not compact.strip():
        raise Skip(f"the transcript {path} holds nothing to keep yet")
    digest = build_digest(rec, session_id=session, event=event, max_bytes=settings.memory.max_content_bytes,
                          last_message=last, compact_summary=compact)
    digest.metadata["captured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key in ("trigger", "reason"):
        if _text(data, key):
            digest.metadata[key] = _text(data, key)[:100]
    args = {"content": digest.content, "memory_type": DIGEST_TYPE, "importance": DIGEST_IMPORTANCE,
            "tags": digest.tags, "metadata": digest.metadata, "session": session, "origin": "hook",
            "origin_detail": event}
    what = _store_digest(settings, args, session, deadline)
    log.info("hook %s, session %s: %s in %.2f s", event, session, what, time.monotonic() - started)
    return what


def cmd_hook(a: argparse.Namespace) -> int:
    """Run one hook; always 0 (see the module docstring). Runs before settings are loaded, so that a
    bad home or configuration is said and skipped like every other failure."""
    started = time.monotonic()
    event = EVENTS.get(a.event, a.event)
    deadline_s = a.deadline if a.deadline and 0 < a.deadline <= 600 else DEFAULT_DEADLINE_S
    deadline = started + deadline_s
    _silence_stdout()
    timer = _watchdog(deadline_s + WATCHDOG_GRACE_S, event)
    try:
        what = _capture(a, event, started, deadline)
        if a.verbose:
            _say(f"{event}: {what}")
    except Skip as e:
        log.info("hook %s: %s", event, e)
        _say(f"{event}: {e}")
    except BaseException as e:  # noqa: BLE001 - a hook never fails the agent: said, logged, exit 0
        message = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        if logging.getLogger().handlers:  # set up: the warning goes to stderr (one line) and the log file
            log.warning("hook %s failed after %.2f s: %s", event, time.monotonic() - started, message,
                        exc_info=not hasattr(e, "message"))
        else:
            _say(f"{event} failed: {message}")
    finally:
        timer.cancel()
    return 0
