"""The coordination layer with real processes: sessions share one store, owners die, turns pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from clarity.config import load_settings
from clarity.coordination import tickets
from clarity.coordination.lease import Lease
from clarity.platform import locks
from clarity.session_client import SessionClient, ToolCallError
from tests.conftest import all_memories, cli, kill, open_sessions, owner_session, pid_of, run_async, status

HOLD_LOCK = """
import sys, time
from pathlib import Path
from clarity.platform import locks
lock = locks.FileLock(Path(sys.argv[1])); assert lock.try_lock(True); print("locked", flush=True); time.sleep(600)
"""
HOLD_LEASE = """
import sys, time
from pathlib import Path
from clarity.coordination.lease import Lease
assert Lease(Path(sys.argv[1])).try_acquire(None, "forward"); print("locked", flush=True); time.sleep(600)
"""


def _holder(path: Path, script: str = HOLD_LOCK) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_lock_probe_sees_holders_and_frees_on_kill(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    assert locks.probe(path) is None  # missing
    p = _holder(path)
    try:
        assert locks.probe(path) is locks.LockState.EXCLUSIVE
    finally:
        p.kill()
        p.wait()
    assert locks.probe(path) is locks.LockState.FREE


def test_epoch_grows_and_survives_garbage_record(home: Path) -> None:
    s = load_settings(home)
    lease = Lease(s.coordination_dir)
    epochs = []
    for _ in range(3):
        assert lease.try_acquire(None, "forward")
        epochs.append(lease.epoch)
        lease.release()
    (s.coordination_dir / "lease.json").write_text("{garbage")
    assert lease.try_acquire(None, "forward")
    epochs.append(lease.epoch)
    lease.release()
    assert epochs == [1, 2, 3, 4]


async def _store(s: SessionClient, content: str, tags: list[str] | None = None) -> dict[str, Any]:
    return await s.call("store_memory", {"content": content, "tags": tags or []})  # type: ignore[no-any-return]


def test_two_then_eight_sessions_share_everything(home: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 2) as (a, b):
            ra = await _store(a, "Session A decided to use Redis for the job queue")
            rb = await _store(b, "Session B found that the cache TTL is ten minutes")
            hit = await b.call("retrieve_memory", {"query": "what do we use for the job queue"})
            assert hit["memories"][0]["id"] == ra["id"]
            hit = await a.call("retrieve_memory", {"query": "how long do cache entries live"})
            assert hit["memories"][0]["id"] == rb["id"]
            roles = sorted([(await a.call("coordination_status"))["this_process"]["role"],
                            (await b.call("coordination_status"))["this_process"]["role"]])
            assert roles[0] == "owner" and roles[1] in ("peer", "standby")  # the other may be the hot standby
        async with open_sessions(home, 8) as sessions:
            topics = ["kafka", "nginx", "terraform", "grafana", "sentry", "celery", "vault", "redis"]

            async def write(i: int) -> None:
                for k in range(3):
                    await _store(sessions[i], f"Session {i} note {k}: the team configured {topics[i]} setting {k}",
                                 ["shared"])

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(write, i)
            for s in sessions:
                mems = await all_memories(s, ["shared"])
                assert len(mems) == 24
                st = await s.call("coordination_status")
                if st["this_process"]["role"] == "peer":
                    # a non-owner never loads the model nor opens the engine (the standby loads the model)
                    assert st["this_process"] == {**st["this_process"], "engine_open": False,
                                                  "model_loaded": False, "engine_imported": False,
                                                  "model_imported": False}
                elif st["this_process"]["role"] == "standby":
                    assert st["this_process"] == {**st["this_process"], "engine_open": False,
                                                  "engine_imported": False}
                for i in (0, 5):
                    hit = await s.call("retrieve_memory", {"query": f"the team configured {topics[i]} setting 1",
                                                           "limit": 1})
                    assert hit["memories"][0]["content"].startswith(f"Session {i} note 1")
            assert (await sessions[3].call("memory_stats"))["total"] == 26

    run_async(main)


def test_sixteen_sessions_started_at_once_have_one_owner(home: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 16) as sessions:
            results: list[Any] = [None] * 16

            async def go(i: int) -> None:
                results[i] = await _store(sessions[i], f"session {i} was here at the same instant")

            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(go, i)
            assert all(r["stored"] for r in results)
            roles = Counter([(await s.call("coordination_status"))["this_process"]["role"] for s in sessions])
            assert roles["owner"] == 1 and roles["peer"] + roles["standby"] == 15 and roles["standby"] <= 1
            owner_pid = (await sessions[0].call("coordination_status"))["owner"]["pid"]
            _, owner = await owner_session(sessions)
            assert await pid_of(owner) == owner_pid
            assert (await sessions[7].call("memory_stats"))["total"] == 16

    run_async(main)


async def _storm(sessions: list[SessionClient], per_writer: int, acked: list[tuple[str, str]],
                 errors: dict[int, list[str]], tag: str) -> None:
    async def writer(i: int) -> None:
        for k in range(per_writer):
            content = f"storm {tag} writer {i} write {k} {uuid.uuid4().hex[:6]}"
            try:
                r = await _store(sessions[i], content, ["storm"])
            except Exception as e:
                errors.setdefault(i, []).append(f"{type(e).__name__}: {e}")
                return
            acked.append((r["id"], content))

    async with anyio.create_task_group() as tg:
        for i in range(len(sessions)):
            tg.start_soon(writer, i)


def _check_exactly_once(mems: list[dict[str, Any]], acked: list[tuple[str, str]]) -> None:
    by_id = {m["id"]: m for m in mems}
    lost = [a for a in acked if a[0] not in by_id]
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:3]}"
    dup = [c for c, n in Counter(m["content"] for m in mems).items() if n > 1]
    assert not dup, f"duplicated: {dup[:3]}"
    for mid, content in acked:
        assert by_id[mid]["content"] == content


def test_sigkill_owner_during_write_storm(home: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 4) as sessions:
            await _store(sessions[0], "warm up: the first caller becomes the owner")
            st = await sessions[0].call("coordination_status")
            assert st["this_process"]["role"] == "owner"
            old_epoch, owner_pid = st["owner"]["epoch"], st["owner"]["pid"]
            acked: list[tuple[str, str]] = []
            errors: dict[int, list[str]] = {}

            async def killer() -> None:
                while len(acked) < 20:
                    await anyio.sleep(0.01)
                kill(owner_pid)

            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                tg.start_soon(_storm, sessions, 25, acked, errors, "kill")
            # only the killed session (index 0) may have seen errors
            assert set(errors) <= {0}, errors
            survivors = sessions[1:]
            mems = await all_memories(survivors[0], ["storm"])
            _check_exactly_once(mems, acked)
            assert len([a for a in acked]) >= 3 * 25
            st = await survivors[1].call("coordination_status")
            assert st["owner"]["epoch"] > old_epoch and st["owner"]["pid"] != owner_pid

    run_async(main)


def test_sigterm_owner_hands_over_cleanly(home: Path) -> None:
    async def main() -> None:
        async with open_sessions(home, 3) as sessions:
            first = [await _store(sessions[0], f"before the handover {i}") for i in range(5)]
            st = await sessions[0].call("coordination_status")
            owner_pid, epoch = st["owner"]["pid"], st["owner"]["epoch"]
            kill(owner_pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while (o := status(home)["owner"]) is not None and o["pid"] == owner_pid and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            o = status(home)["owner"]
            if o is None:  # released, not just died
                assert not (home / "qdrant/.qdrant_coordination/owner.sock").exists()
            else:  # the hot standby took the released lease at once
                assert o["pid"] != owner_pid and o["epoch"] == epoch + 1
            later = await _store(sessions[1], "after the handover")
            st = await sessions[2].call("coordination_status")
            assert st["owner"]["epoch"] == epoch + 1
            ids = {m["id"] for m in await all_memories(sessions[2])}
            assert {r["id"] for r in first} | {later["id"]} <= ids
        log = (home / "logs" / "clarity.log").read_text()
        assert f"{owner_pid} INFO clarity.coordination.lease: lease: released, epoch {epoch}" in log

    run_async(main)


def test_leftovers_of_dead_processes_are_cleaned(home: Path) -> None:
    s = load_settings(home)
    coord = s.coordination_dir
    # a waiter ticket of a process that died (its lock is free), a record and a socket of a dead owner
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (coord / "waiters" / f"{'0' * 20}-{dead.stdout.strip()}-deadbeef.json").write_text('{"pid": 1}')
    (coord / "lease.json").write_text(orjson.dumps({"pid": int(dead.stdout), "epoch": 41}).decode())
    import socket as so

    dangling = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    dangling.bind(str(coord / "owner.sock"))
    dangling.close()  # the file stays, nobody listens
    assert tickets.live(coord / "waiters") == []
    st = status(home)
    assert st["owner"] is None and st["waiters"] == []

    async def main() -> None:
        async with open_sessions(home, 2) as (a, b):
            await _store(b, "works despite the leftovers")
            assert (await a.call("memory_stats"))["total"] == 1
            st = await a.call("coordination_status")
            assert st["owner"]["epoch"] == 42 and st["owner"]["state"] == "serving"

    run_async(main)
    assert list((coord / "waiters").iterdir()) == []
    log = (home / "logs" / "clarity.log").read_text()
    assert "removed stale waiter ticket" in log and "replaced the record of pid" in log


def test_doctor_removes_leftovers_but_never_a_live_lease(home: Path) -> None:
    s = load_settings(home)
    coord = s.coordination_dir
    (coord / "waiters" / f"{'0' * 20}-1-dead.json").write_text("{}")
    (coord / "owner.sock").write_text("")
    out = orjson.loads(cli(home, "doctor", "--json").stdout)
    assert any("waiter ticket" in r for r in out["removed"]) and any("socket" in r for r in out["removed"])
    assert not (coord / "owner.sock").exists()
    p = _holder(coord, HOLD_LEASE)
    try:
        out = orjson.loads(cli(home, "doctor", "--json").stdout)
        assert (coord / "lease.json").exists() and out["status"]["owner"]["pid"] == p.pid
    finally:
        p.kill()
        p.wait()


def test_handoff_mode_sessions_take_turns(home: Path) -> None:
    env = {"CLARITY_COORDINATION_MODE": "handoff", "CLARITY_HANDOFF_QUANTUM_S": "0.05"}

    async def main() -> None:
        async with open_sessions(home, 3, env=env) as sessions:
            acked: list[tuple[str, str]] = []
            errors: dict[int, list[str]] = {}
            await _storm(sessions, 12, acked, errors, "handoff")
            assert errors == {}
            assert len(acked) == 36
            mems = await all_memories(sessions[0], ["storm"])
            _check_exactly_once(mems, acked)
            writers = Counter(m["session"].split("-")[0] for m in mems)
            assert len(writers) == 3 and set(writers.values()) == {12}
            st = await sessions[1].call("coordination_status")
            assert st["mode"] == "handoff" and st["owner"]["epoch"] >= 3  # the lease really moved
            assert not any(s.startswith("peer") for s in [st["this_process"]["role"]])

    run_async(main)


def test_sigstop_owner_gives_unresponsive_error_then_recovers(home: Path) -> None:
    env = {"CLARITY_CALL_DEADLINE_S": "2", "CLARITY_HUNG_AFTER_S": "1"}

    async def main() -> None:
        async with open_sessions(home, 2, env=env) as (a, b):
            await _store(a, "owner is alive")
            owner_pid = (await a.call("coordination_status"))["owner"]["pid"]
            os.kill(owner_pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                with pytest.raises(ToolCallError) as e:
                    await _store(b, "written while the owner is frozen")
                took = time.monotonic() - t0
                assert "unresponsive" in e.value.message and str(owner_pid) in e.value.message
                assert 1.5 < took < 6
                await anyio.sleep(0.5)
                st = await b.call("coordination_status")
                assert st["owner"]["pid"] == owner_pid and st["owner"]["state"] == "hung"
                assert "HUNG" in cli(home, "status", env=env).stdout
            finally:
                os.kill(owner_pid, signal.SIGCONT)
            r = await _store(b, "written after the owner thawed")
            assert r["stored"]
            # "hung" is a heartbeat older than CLARITY_HUNG_AFTER_S (1 s here, one heartbeat interval): the
            # thawed owner's heartbeat thread may run a moment after it served the store on a busy machine
            end = time.monotonic() + 10
            while (state := (await a.call("coordination_status"))["owner"]["state"]) != "serving":
                assert time.monotonic() < end, f"the thawed owner still reads {state!r} after 10 s"
                await anyio.sleep(0.1)
            contents = {m["content"] for m in await all_memories(a)}
            assert "written after the owner thawed" in contents
            assert "written while the owner is frozen" not in contents  # its caller gave up first

    run_async(main)


def test_killing_a_frozen_owner_does_not_start_a_handoff_storm(home: Path) -> None:
    """Calls that waited at an owner which then died must not ask the next owner to step down."""

    async def main() -> None:
        async with open_sessions(home, 3) as (a, b, c):
            await _store(a, "seed")
            a_pid = await pid_of(a)
            os.kill(a_pid, signal.SIGSTOP)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_store, b, "from b")
                tg.start_soon(_store, c, "from c")
                await anyio.sleep(1.5)
                os.kill(a_pid, signal.SIGKILL)  # kills a stopped process too; a SIGCONT after it raced
                # with the reaping of the dead child on a busy machine (ProcessLookupError)
            assert (await b.call("memory_stats"))["total"] == 3
        log = (home / "logs" / "clarity.log").read_text()
        assert "waiting for a handoff" not in log and "handing off" not in log

    run_async(main)
