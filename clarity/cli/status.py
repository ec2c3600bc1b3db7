"""The commands that report on the store rather than on memories: `status` (which store, who owns it,
who waits; never takes the lease), `stats` (totals by type, engine, model, storage size) and `doctor`
(removes what dead processes left in the coordination folder).

On a project with no store they create nothing and answer with the same keys as with one. `status`
and `doctor` import only the coordination status code, never the engine or the model.
"""

from __future__ import annotations

import argparse
from typing import Any

from clarity.cli.output import out
from clarity.cli.render import status_text
from clarity.cli.store_access import no_store, out_no_store, store_exists, with_coordinator
from clarity.config import DEFAULT_MODEL, Settings


def _status_without_store(settings: Settings) -> dict[str, Any]:
    """Status where there is no store yet: the same keys (status reads, it creates nothing)."""
    from clarity.coordination.status import status

    return {"store_exists": False, **status(settings)}


def server_text(st: dict[str, Any]) -> str:
    """`clarity status` in server mode: no lease, no owner; the server and the collection."""
    sv = st["server"]
    lines = [f"mode server (no lease, no owner: every session talks to the server), home {st['home']}",
             f"server: {sv['url']}, TLS {'on' if sv['tls'] else 'off'}, API key {'set' if sv['api_key'] else 'none'}, "
             f"version {sv['server_version'] or 'unknown'}",
             f"collection: {sv['collection']}, points {sv['points'] if sv['points'] is not None else 'unknown'}"]
    if sv.get("error"):
        lines.append(f"server: {sv['error']}")
    if sv.get("warning"):
        lines.append(f"WARNING: {sv['warning']}")
    return "\n".join(lines)


def cmd_status(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.status import status
    from clarity.engines import engine_is_exclusive

    if not engine_is_exclusive(settings):  # a Qdrant server: the store is there, not in the home
        st = {"store_exists": True, **status(settings)}
        out(st, a.json, server_text(st))
        return 0
    if not store_exists(settings):
        out(_status_without_store(settings), a.json,
            f"no store yet: it would be at {settings.home} (chosen by: {settings.home_source}); `clarity store` "
            "or the first `clarity serve` session creates it")
        return 0
    st = {"store_exists": True, **status(settings)}
    out(st, a.json, status_text(st))
    return 0


def cmd_doctor(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.coordination.status import doctor

    if not store_exists(settings):
        out_no_store({"removed": [], "status": _status_without_store(settings)}, a, settings,
                     "nothing to clean: " + no_store(settings))
        return 0
    res = doctor(settings)
    text = ("removed:\n" + "\n".join(f"  {r}" for r in res["removed"])) if res["removed"] else "nothing stale"
    out(res, a.json, text + "\n" + status_text(res["status"]))
    return 0


def cmd_stats(settings: Settings, a: argparse.Namespace) -> int:
    from clarity.engines import engine_is_exclusive

    if store_exists(settings) or not engine_is_exclusive(settings):  # a server's store is not in the home
        res = with_coordinator(settings, "stats", {})
    else:
        from clarity.encoders.dense import DEFAULT_DIM

        res = {"total": 0, "by_type": {}, "engine": settings.engine.kind, "model": settings.embedding.model,
               "dims": DEFAULT_DIM if settings.embedding.model == DEFAULT_MODEL else None, "storage_bytes": 0,
               "unindexed": 0, "index_building": False, "home": str(settings.home), "served_by_pid": None}
        out_no_store(res, a, settings, no_store(settings))
        return 0
    where = res["home"] if res.get("engine") != "qdrant-server" else "the Qdrant server's collection"
    lines = [f"{res['total']} memories in {where}", f"engine {res['engine']}, model {res['model']} "
             f"({res['dims']} dims), storage {res['storage_bytes']} bytes"]
    lines += [f"  {t}: {n}" for t, n in res["by_type"].items()]
    out(res, a.json, "\n".join(lines))
    return 0
