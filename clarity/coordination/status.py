"""Status and doctor, without a Coordinator. Neither ever takes the lease, and neither ever waits on a
lock: status probes locks (F_OFD_GETLK) and reads lease.json, which is replaced atomically; doctor's
cleanup takes the maintenance lock only when it is free at once.

Who owns the lease: the lease lock says whether anyone holds it (a probe cannot tell who); lease.json
names the holder. The record is trusted when it is not stamped released and, when its process is in
this pid namespace, that process still runs with the recorded start time. Otherwise the state is
"starting" (a new owner between taking the lock and writing its record). A record from another pid
namespace (another container) is described as such: its pid means nothing here.

With a Qdrant server (`CLARITY_QDRANT_URL`): mode "server", no owner, and `server`: its URL (never the
API key), TLS on or off, the collection, the server's version and the collection's points (each asked
with a 2 s timeout: None when the server did not answer), and a warning when an API key travels over
plain HTTP to a host that is not the loopback.

Versions (`versions`): this process's Clarity version and protocol (`wire.PROTOCOL`) and the store format
it reads, the owner's (from lease.json: a record without a protocol is Clarity 0.1.x, protocol 1), and
the store's (`clarity.engines.store_format`), with `problem` saying in words what a mismatch means
(None when there is none).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from clarity import __version__
from clarity.config import Settings
from clarity.coordination import tickets, wire
from clarity.coordination.lease import Lease
from clarity.coordination.maintenance import maintenance
from clarity.coordination.owner_server import socket_path_for
from clarity.engines import engine_is_exclusive, store_format
from clarity.errors import CoordinationTimeout, StoreTooNew
from clarity.platform import backends, files, locks, processes

log = logging.getLogger(__name__)


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _trusted(rec: dict[str, Any] | None, my_ns: str | None) -> bool:
    if rec is None or rec.get("released_at") is not None or not isinstance(rec.get("pid"), int):
        return False
    if rec.get("pid_namespace") not in (None, my_ns):
        return True  # another container: the lock is held and the record is not released
    return processes.process_start_time(rec["pid"]) == rec.get("start_time")


def owner(settings: Settings, lease: Lease | None = None) -> dict[str, Any] | None:
    """The owner as seen from here, or None when nobody holds the lease."""
    lease = lease or Lease(settings.coordination_dir)
    my_ns = processes.pid_namespace()
    if lease.held and lease.record is not None:
        rec: dict[str, Any] | None = dict(lease.record)
    else:
        if locks.probe(lease.lock_path) in (None, locks.LockState.FREE):
            return None
        rec = lease.read_record()
    now = time.time()
    if rec is None or not _trusted(rec, my_ns):
        return {"pid": None, "host": None, "epoch": None, "since": None, "heartbeat_age_s": None,
                "state": "starting", "mode": None, "socket": None, "pid_namespace": None,
                "same_pid_namespace": None, "version": None, "protocol": None,
                "where": "a process that is taking over the lease"}
    hb = rec.get("heartbeat_at")
    age = round(now - hb, 3) if isinstance(hb, int | float) else None
    ns = rec.get("pid_namespace")
    same = ns in (None, my_ns)
    where = f"pid {rec['pid']} on {rec.get('host')}" if same else \
        f"pid {rec['pid']} in another pid namespace ({ns}, host {rec.get('host')})"
    return {
        "pid": rec["pid"], "host": rec.get("host"), "epoch": rec.get("epoch"), "since": _iso(rec.get("acquired_at")),
        "heartbeat_age_s": age,
        "state": "hung" if age is not None and age > settings.coordination.hung_after_s else "serving",
        "mode": rec.get("mode"), "socket": rec.get("socket"), "pid_namespace": ns, "same_pid_namespace": same,
        "version": rec.get("version") if isinstance(rec.get("version"), str) else None,
        "protocol": wire.record_protocol(rec), "where": where,
    }


HEAVY = ("fastembed", "onnxruntime", "numpy", "qdrant_edge", "qdrant_client")


def standby(settings: Settings) -> dict[str, Any] | None:
    """The hot standby ({"pid": ...} as it wrote it in standby.lock), or None when there is none."""
    path = settings.layout.coordination.standby_lock
    if locks.probe(path) is not locks.LockState.EXCLUSIVE:
        return None
    raw = (files.read_bytes_nofollow(path, 32) or b"").strip()
    return {"pid": int(raw) if raw.isdigit() else None}


def this_process(role: str = "observer", service: Any = None, embedder: Any = None) -> dict[str, Any]:
    embedder = service.embedder if service is not None else embedder
    return {
        "pid": os.getpid(), "role": role,
        "engine_open": bool(service is not None and service.engine_open),
        "model_loaded": bool(embedder is not None and embedder.loaded),
        "engine_imported": "qdrant_client" in sys.modules or "qdrant_edge" in sys.modules,
        "model_imported": "fastembed" in sys.modules or "onnxruntime" in sys.modules,
        "heavy_imports": [m for m in HEAVY if m in sys.modules],
        "platform": backends(),
        "version": __version__, "protocol": wire.PROTOCOL,
    }


def versions(settings: Settings, owner_: dict[str, Any] | None) -> dict[str, Any]:
    """This process's, the owner's and the store's versions, and what a mismatch among them means."""
    me = {"clarity": __version__, "protocol": wire.PROTOCOL, "store_format": store_format.FORMAT}
    who = None
    if owner_ is not None and owner_.get("protocol") is not None:
        who = {"clarity": owner_.get("version"), "protocol": owner_["protocol"], "pid": owner_.get("pid")}
    store, problem = None, None
    if engine_is_exclusive(settings):  # a server's store is not in the home
        try:
            store = store_format.check(settings)
        except StoreTooNew as e:
            store, problem = store_format.read(settings), e.message
    if problem is None and who is not None and who["protocol"] != wire.PROTOCOL:
        problem = wire.version_mismatch(who["clarity"], who["pid"], who["protocol"], __version__,
                                        wire.PROTOCOL).message
    return {"this_process": me, "owner": who, "store": store, "problem": problem}


def status(settings: Settings, *, lease: Lease | None = None, own_ticket: Any = None,
           me: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who owns the lease, who waits, and what this process is."""
    waiters_dir = settings.layout.coordination.waiters
    waiters = [{"pid": t["pid"], "since": _iso(t["since"]), "ticket": t["ticket"]}
               for t in tickets.live(waiters_dir, exclude=own_ticket)]
    who = owner(settings, lease)
    if not engine_is_exclusive(settings):  # a Qdrant server: no lease, no owner; what the server says
        from clarity.engines.server_info import describe

        return {"mode": "server", "home": str(settings.home), "home_source": settings.home_source, "owner": None,
                "waiters": [], "standby": None, "server": describe(settings), "this_process": me or this_process(),
                "versions": versions(settings, None)}
    return {
        "mode": settings.coordination.mode,
        "home": str(settings.home),
        "home_source": settings.home_source,
        "owner": who,
        "waiters": waiters,
        "standby": standby(settings),
        "this_process": me or this_process(),
        "versions": versions(settings, who),
    }


def doctor(settings: Settings) -> dict[str, Any]:
    """Remove what dead processes left behind, never anything a live process holds: with no owner
    (the maintenance lock free at once) the record, the socket and stale tickets; with an owner only
    stale tickets."""
    cf = settings.layout.coordination
    coord = cf.dir
    removed: list[str] = []
    try:
        with maintenance(settings, timeout_s=0.0):
            removed += tickets.cleanup_stale(cf.waiters)
            if files.unlink_quiet(cf.lease_record):
                removed.append("lease record of a dead owner")
            for sock in dict.fromkeys([socket_path_for(coord), cf.owner_socket]):
                if files.unlink_quiet(sock):
                    removed.append(f"socket {sock} of a dead owner")
    except CoordinationTimeout:
        removed += tickets.cleanup_stale(cf.waiters)
    for leftover in coord.glob(".*.tmp"):
        try:
            if time.time() - os.lstat(leftover).st_mtime > 60 and files.unlink_quiet(leftover):
                removed.append(f"temp file {leftover.name}")
        except OSError:
            pass
    for what in removed:
        log.info("doctor: removed %s", what)
    return {"removed": removed, "status": status(settings)}
