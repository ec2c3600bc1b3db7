"""clarity.coordination.status: status and doctor without a Coordinator, against real lock holders.
(tests/test_coordination.py covers `clarity doctor` removing a ticket and a socket and keeping a live
lease; tests/test_lease.py a stopped records.lock holder through the CLI.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from clarity import __version__
from clarity.config import Settings, load_settings
from clarity.coordination import status as st
from clarity.coordination import tickets, wire
from clarity.coordination.lease import Lease
from clarity.engines import store_format
from clarity.platform import backends, files, processes
from tests.harness.scripted import Scripted

pytestmark = pytest.mark.timeout(120)
HOLDER = r"""
import os, sys
from pathlib import Path
from clarity.coordination.lease import Lease
from clarity.coordination import tickets
from clarity.platform import locks
coord, what = Path(sys.argv[1]), sys.argv[2]
if what == "lease":
    keep = Lease(coord)
    assert keep.try_acquire("/some/owner.sock", "handoff")
elif what == "ticket":
    keep = tickets.add(coord / "waiters")
else:
    name, mode = what.split(":")
    keep = locks.FileLock(coord / name)
    assert keep.try_lock(mode == "ex")
    if name == "standby.lock":
        os.write(keep.fd, (sys.argv[3] if len(sys.argv) > 3 else str(os.getpid())).encode())
print("held", flush=True)
sys.stdin.readline()
"""


class Holder(Scripted):
    def __init__(self, coord: Path, what: str, *extra: str) -> None:
        super().__init__(HOLDER, str(coord), what, *extra, ready="held")


@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings(home)


@pytest.fixture
def hold(settings: Settings) -> Iterator[Callable[..., Holder]]:
    started: list[Holder] = []

    def start(what: str, *extra: str) -> Holder:
        h = Holder(settings.coordination_dir, what, *extra)
        started.append(h)
        return h

    yield start
    for h in started:
        if h.alive:
            os.kill(h.pid, signal.SIGCONT)
        h.kill()


def _record(settings: Settings) -> dict[str, Any]:
    rec = files.read_json(settings.coordination_dir / "lease.json")
    assert rec is not None
    return rec


def _rewrite(settings: Settings, **changes: Any) -> None:
    files.publish_json(settings.coordination_dir / "lease.json", {**_record(settings), **changes})


def test_nobody_owns_nobody_waits_no_standby(settings: Settings) -> None:
    out = st.status(settings)
    assert out["owner"] is None and out["waiters"] == [] and out["standby"] is None
    assert out["mode"] == settings.coordination.mode and out["home"] == str(settings.home)
    assert out["home_source"] == settings.home_source
    assert out["this_process"]["pid"] == os.getpid() and out["this_process"]["role"] == "observer"


def test_an_owner_in_another_process_is_described_from_its_record(settings: Settings,
                                                                   hold: Callable[..., Holder]) -> None:
    owner = hold("lease")
    o = st.owner(settings)
    assert o is not None
    assert (o["pid"], o["epoch"], o["mode"], o["socket"], o["state"]) == \
        (owner.pid, 1, "handoff", "/some/owner.sock", "serving")
    assert o["host"] == socket.gethostname() and o["where"] == f"pid {owner.pid} on {socket.gethostname()}"
    assert o["pid_namespace"] == processes.pid_namespace() and o["same_pid_namespace"] is True
    assert 0 <= o["heartbeat_age_s"] < 30
    since = datetime.fromisoformat(o["since"])
    assert since.tzinfo is not None and abs(since.timestamp() - _record(settings)["acquired_at"]) < 0.002


def test_an_old_heartbeat_reads_hung(settings: Settings, hold: Callable[..., Holder]) -> None:
    hold("lease")
    settings.coordination.hung_after_s = 5
    _rewrite(settings, heartbeat_at=time.time() - 60)
    o = st.owner(settings)
    assert o is not None and o["state"] == "hung" and 59 < o["heartbeat_age_s"] < 90
    _rewrite(settings, heartbeat_at=time.time())
    o = st.owner(settings)
    assert o is not None and o["state"] == "serving"


def test_the_owner_process_describes_itself_from_its_own_record(settings: Settings) -> None:
    lease = Lease(settings.coordination_dir)
    assert lease.try_acquire(None, "forward")
    try:
        (settings.coordination_dir / "lease.json").write_bytes(b"{garbage")  # the file does not matter to it
        o = st.owner(settings, lease)
        assert o is not None and o["pid"] == os.getpid() and o["state"] == "serving"
        assert lease.record is not None
        lease.record["heartbeat_at"] = time.time() - 3600
        assert st.owner(settings, lease)["state"] == "hung"  # type: ignore[index]
        other_view = st.owner(settings)  # another reader in this process only has the (garbage) file
        assert other_view is not None and other_view["state"] == "starting" and other_view["pid"] is None
    finally:
        lease.release()
    assert st.owner(settings) is None


@pytest.mark.parametrize("change", ["no record", "released", "dead pid", "restarted pid", "pid not a number"])
def test_an_untrusted_record_under_a_held_lock_reads_starting(settings: Settings, hold: Callable[..., Holder],
                                                              change: str) -> None:
    hold("lease")
    coord = settings.coordination_dir
    if change == "no record":
        (coord / "lease.json").unlink()
    elif change == "released":
        _rewrite(settings, released_at=time.time())
    elif change == "dead pid":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        _rewrite(settings, pid=gone.pid)
    elif change == "restarted pid":
        _rewrite(settings, start_time=(_record(settings)["start_time"] or 0) + 1)  # same pid, another process
    else:
        _rewrite(settings, pid="1234")
    o = st.owner(settings)
    assert o is not None and o["state"] == "starting"
    assert o["pid"] is None and o["epoch"] is None and "taking over" in o["where"]


def test_a_record_from_another_pid_namespace_is_trusted_and_said_so(settings: Settings,
                                                                    hold: Callable[..., Holder]) -> None:
    hold("lease")
    _rewrite(settings, pid=7, pid_namespace="pid:[4000000001]", start_time=1, host="container-a")
    o = st.owner(settings)
    assert o is not None and o["state"] == "serving" and o["pid"] == 7
    assert o["same_pid_namespace"] is False
    assert o["where"] == "pid 7 in another pid namespace (pid:[4000000001], host container-a)"


def test_a_record_without_a_held_lock_means_no_owner(settings: Settings, hold: Callable[..., Holder]) -> None:
    owner = hold("lease")
    owner.kill()  # lease.json still names it, unreleased
    assert _record(settings)["released_at"] is None
    assert st.owner(settings) is None


def test_status_never_waits_on_a_stopped_lock_holder(settings: Settings, hold: Callable[..., Holder]) -> None:
    for name in ("lease.lock:ex", "records.lock:ex", "standby.lock:ex"):
        h = hold(name)
        os.kill(h.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    out = st.status(settings)
    assert time.monotonic() - t0 < 2
    assert out["owner"]["state"] == "starting"


def test_the_standby_is_the_exclusive_holder_of_standby_lock(settings: Settings, hold: Callable[..., Holder]) -> None:
    assert st.standby(settings) is None
    shared = hold("standby.lock:sh")
    assert st.standby(settings) is None  # a shared lock is not the standby's
    shared.kill()
    standby = hold("standby.lock:ex")
    assert st.standby(settings) == {"pid": standby.pid}
    standby.kill()
    assert st.standby(settings) is None
    hold("standby.lock:ex", "not-a-pid")
    assert st.standby(settings) == {"pid": None}


def test_waiters_are_listed_with_our_own_ticket(settings: Settings, hold: Callable[..., Holder]) -> None:
    other = hold("ticket")
    mine = tickets.add(settings.layout.coordination.waiters)
    try:
        waiters = st.status(settings, own_ticket=mine.path)["waiters"]
        assert [w["pid"] for w in waiters] == [other.pid, os.getpid()]
        assert datetime.fromisoformat(waiters[0]["since"]).tzinfo is not None and waiters[1]["since"] is None
        assert waiters[1]["ticket"] == mine.path.name
    finally:
        mine.remove()


def test_this_process_reports_its_role_imports_and_backends() -> None:
    me = st.this_process("peer")
    assert me["pid"] == os.getpid() and me["role"] == "peer"
    assert me["engine_open"] is False and me["model_loaded"] is False
    assert me["heavy_imports"] == [m for m in st.HEAVY if m in sys.modules]
    assert me["engine_imported"] == ("qdrant_client" in sys.modules or "qdrant_edge" in sys.modules)
    if "platform" in me:
        assert me["platform"] == backends()

    class Embedder:
        loaded = True

    class Service:
        engine_open = True
        embedder = Embedder()

    me = st.this_process("owner", service=Service())
    assert me["engine_open"] is True and me["model_loaded"] is True
    assert st.this_process(embedder=Embedder())["model_loaded"] is True


def _leftovers(settings: Settings) -> dict[str, Path]:
    coord = settings.coordination_dir
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = coord / "waiters" / f"{'0' * 19}1-{gone.pid}-deadbeef.json"
    stale.write_bytes(b"{}")
    old_tmp, fresh_tmp = coord / ".lease.json.1.aaaa.tmp", coord / ".epoch.2.bbbb.tmp"
    for p in (old_tmp, fresh_tmp):
        p.write_bytes(b"")
    hour_ago = time.time() - 3600
    os.utime(old_tmp, (hour_ago, hour_ago))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(coord / "owner.sock"))
    sock.close()
    return {"stale": stale, "old_tmp": old_tmp, "fresh_tmp": fresh_tmp, "sock": coord / "owner.sock"}


def test_doctor_without_an_owner_removes_what_dead_processes_left(settings: Settings) -> None:
    lease = Lease(settings.coordination_dir)
    for _ in range(3):
        assert lease.try_acquire(None, "forward")
        lease.release()
    left = _leftovers(settings)
    out = st.doctor(settings)
    removed = out["removed"]
    assert f"waiter ticket {left['stale'].name}" in removed
    assert "lease record of a dead owner" in removed
    assert any(r.startswith("socket ") and "owner.sock" in r for r in removed)
    assert f"temp file {left['old_tmp'].name}" in removed
    assert len(removed) == 4, removed
    assert not left["stale"].exists() and not left["old_tmp"].exists() and not left["sock"].exists()
    assert left["fresh_tmp"].exists()  # may be a live writer's
    assert not (settings.coordination_dir / "lease.json").exists()
    assert out["status"]["owner"] is None and out["status"]["waiters"] == []
    assert lease.try_acquire(None, "forward")  # the epoch survives the record's removal
    try:
        assert lease.epoch == 4
    finally:
        lease.release()


def test_doctor_with_a_live_owner_only_removes_stale_tickets(settings: Settings, hold: Callable[..., Holder]) -> None:
    left = _leftovers(settings)
    waiting = hold("ticket")
    owner = hold("lease")
    before = _record(settings)
    t0 = time.monotonic()
    out = st.doctor(settings)
    assert time.monotonic() - t0 < 2  # it never waits for the owner
    assert f"waiter ticket {left['stale'].name}" in out["removed"]
    assert f"temp file {left['old_tmp'].name}" in out["removed"]
    assert not any("lease record" in r or r.startswith("socket ") for r in out["removed"])
    assert _record(settings) == before and left["sock"].exists()
    assert [w["pid"] for w in out["status"]["waiters"]] == [waiting.pid]
    assert out["status"]["owner"]["pid"] == owner.pid


# ---- versions --------------------------------------------------------------------------------

def test_status_shows_this_process_the_owner_and_the_store_versions(settings: Settings,
                                                                     hold: Callable[..., Holder]) -> None:
    out = st.status(settings)
    assert out["this_process"]["version"] == __version__ and out["this_process"]["protocol"] == wire.PROTOCOL
    assert out["versions"] == {
        "this_process": {"clarity": __version__, "protocol": wire.PROTOCOL, "store_format": store_format.FORMAT},
        "owner": None, "store": {"format": 1, "clarity": None, "recorded": False}, "problem": None}
    owner = hold("lease")
    store_format.open_store(settings)
    out = st.status(settings)
    assert out["owner"]["version"] == __version__ and out["owner"]["protocol"] == wire.PROTOCOL
    assert out["versions"]["owner"] == {"clarity": __version__, "protocol": wire.PROTOCOL, "pid": owner.pid}
    assert out["versions"]["store"] == {"format": store_format.FORMAT, "clarity": __version__, "recorded": True}
    assert out["versions"]["problem"] is None


def test_status_says_what_an_owner_of_clarity_0_1_means(settings: Settings, hold: Callable[..., Holder]) -> None:
    owner = hold("lease")
    rec = _record(settings)
    del rec["protocol"]
    rec["version"] = "0.1.0"
    files.publish_json(settings.coordination_dir / "lease.json", rec)  # what Clarity 0.1.0 writes
    out = st.status(settings)
    assert (out["owner"]["version"], out["owner"]["protocol"]) == ("0.1.0", 1)
    assert out["versions"]["owner"] == {"clarity": "0.1.0", "protocol": 1, "pid": owner.pid}
    assert out["versions"]["problem"] == (
        f"the store is owned by Clarity 0.1.0 (pid {owner.pid}, protocol 1); this session is Clarity "
        f"{__version__} (protocol {wire.PROTOCOL}): restart the older sessions")


def test_status_says_what_a_store_of_a_newer_format_means(settings: Settings) -> None:
    files.publish_json(settings.layout.store_format, {"format": store_format.FORMAT + 1, "clarity": "7.0.0"})
    v = st.status(settings)["versions"]
    assert v["store"] == {"format": store_format.FORMAT + 1, "clarity": "7.0.0", "recorded": True}
    assert "written by Clarity 7.0.0" in v["problem"] and f"this is Clarity {__version__}" in v["problem"]
