"""What the page asks of the store, as plain calls: every one goes through one `Coordinator` of this
process (forwarded to the owner when a session holds the store), exactly like a CLI command or a tool.

Guarantees:
- Nothing here opens the engine or the model itself; the coordinator decides where an operation runs
  (another session's owner, or this process when no session owns the store: then it owns it as any
  session would, serves the others, and lets go when the page stops).
- Nothing is created by reading: until a store exists every read answers empty with `store_exists`
  false, and writes are refused; the coordinator is made on the first call after a store appears.
- Writes are the tools' operations: `update`, `delete`, and `store` with `supersedes` (origin "ui",
  session `ui-<pid>`), with an id chosen before the call (a retried store is an idempotent upsert).
- Blocking: each method blocks its thread for at most the coordination call deadline per call it
  makes; the web layer runs them in worker threads. Thread-safe (the coordinator is).
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from typing import Any

from clarity.cli.store_access import no_store, store_exists
from clarity.config import Settings
from clarity.coordination.coordinator import Coordinator
from clarity.errors import ClarityError, NotFound
from clarity.memory.model import new_id
from clarity.ui.overview import Overview

CHAIN_MAX = 50  # supersede links followed each way (a chain is a line; this bounds a damaged one)
SIMILAR_LIMIT = 5
FILTER_KEYS = ("types", "tags", "origins", "sessions")


class NoStore(NotFound):
    """There is no store yet (reads answer empty; a write is refused with this)."""


class Backend:
    """The page's calls. `settings`: as loaded without creating anything; `load`: loads them again
    (creating nothing new but config defaults) once a store exists."""

    def __init__(self, settings: Settings, load: Callable[[], Settings]) -> None:
        self.settings = settings
        self._load = load
        self._lock = threading.Lock()
        self._coordinator: Coordinator | None = None
        self._closed = False
        self.session = f"ui-{os.getpid()}"
        self.overview = Overview(self.call)

    # ---- plumbing ----------------------------------------------------------------------------

    def exists(self) -> bool:
        return self._coordinator is not None or store_exists(self.settings)

    def coordinator(self) -> Coordinator:
        with self._lock:
            if self._closed:
                raise ClarityError("the page is shutting down")
            if self._coordinator is None:
                if not store_exists(self.settings):
                    raise NoStore(no_store(self.settings))
                self.settings = self._load()
                self._coordinator = Coordinator(self.settings)
            return self._coordinator

    def call(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        return self.coordinator().call(op, args)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            coordinator.close()

    # ---- reads -------------------------------------------------------------------------------

    def memories(self, query: str, filters: dict[str, Any], *, mode: str = "hybrid", since: str | None = None,
                 until: str | None = None, offset: int = 0, limit: int = 25,
                 superseded: bool = False) -> dict[str, Any]:
        """A search (`query` given: best first, at most `limit`) or a page of the list (newest first)."""
        flt = {k: v for k, v in filters.items() if k in FILTER_KEYS and v}
        if not self.exists():
            return {"store_exists": False, "note": no_store(self.settings), "total": 0, "offset": offset,
                    "limit": limit, "memories": []}
        if query:
            args: dict[str, Any] = {"query": query, "limit": min(limit, 100), "mode": mode, **flt,
                                    "include_superseded": superseded, "include_metadata": False}
            for key, value in (("since", since), ("until", until)):
                if value:
                    args[key] = value
            res = self.call("retrieve", args)
            return {"store_exists": True, "search": True, "total": res["count"], "offset": 0,
                    "limit": args["limit"], "memories": res["memories"]}
        flt["include_superseded"] = superseded
        if since or until:
            from clarity.cli.queries import _list_window  # the CLI's windowed list (`clarity list --since`)

            window = argparse.Namespace(since=since or None, until=until or None, offset=offset, limit=limit)
            res = _list_window(self.call, window, flt)
        else:
            res = self.call("list", {**flt, "limit": limit, "offset": offset, "include_content": True})
        return {"store_exists": True, "search": False, **res}

    def flagged(self, offset: int = 0, limit: int = 25) -> dict[str, Any]:
        """Memories whose text reads like an instruction to an agent (`flagged` says why), newest first."""
        if not self.exists():
            return {"store_exists": False, "total": 0, "offset": offset, "limit": limit, "memories": []}
        res = self.call("list", {"flagged": True, "include_superseded": True, "include_content": True,
                                 "limit": limit, "offset": offset})
        return {"store_exists": True, **res}

    def memory(self, memory_id: str) -> dict[str, Any]:
        """One memory whole, its supersede chain both ways (oldest first), and its near-duplicates: memories
        of its type whose meaning is as close as a store's `similar_to` reports (`memory.similar_threshold`)."""
        if not self.exists():
            raise NotFound(f"no memory with id {memory_id}: {no_store(self.settings)}")
        mem = self.call("get", {"memory_id": memory_id})
        older = self._follow(mem, "supersedes")
        newer = self._follow(mem, "superseded_by")
        similar: list[dict[str, Any]] = []
        if mem.get("content"):
            found = self.call("retrieve", {
                "query": mem["content"], "mode": "semantic", "limit": SIMILAR_LIMIT + 1,
                "types": [mem["memory_type"]], "include_superseded": True,
                "min_similarity": self.settings.memory.similar_threshold})
            similar = [m for m in found["memories"] if m["id"] != memory_id][:SIMILAR_LIMIT]
        return {"memory": mem, "older": list(reversed(older)), "newer": newer, "similar": similar}

    def _follow(self, mem: dict[str, Any], link: str) -> list[dict[str, Any]]:
        """The memories reached from `mem` through `link`, nearest first; a missing one ends the walk (a
        one-sided chain: the other side was deleted or a kill fell between the two writes)."""
        chain: list[dict[str, Any]] = []
        seen = {mem["id"]}
        nxt = mem.get(link)
        while nxt and nxt not in seen and len(chain) < CHAIN_MAX:
            seen.add(nxt)
            try:
                cur = self.call("get", {"memory_id": nxt})
            except NotFound:
                chain.append({"id": nxt, "missing": True})
                break
            chain.append({k: cur.get(k) for k in ("id", "memory_type", "created_at", "content")})
            nxt = cur.get(link)
        return chain

    def sessions(self) -> dict[str, Any]:
        """Who owns the store (pid, epoch, heartbeat age, version), the standby, the waiters, the home and
        why it was chosen. Reads lock states and lease.json only: never takes the lease, never waits."""
        from clarity.coordination import status

        with self._lock:
            coordinator = self._coordinator
        st = coordinator.status() if coordinator is not None else status.status(self.settings)
        return {"store_exists": self.exists(), **st}

    def stats(self) -> dict[str, Any]:
        """The stats operation (totals by type, index state, storage size) and the overview (by tag, by
        origin, memories over time)."""
        if not self.exists():
            return {"store_exists": False, "note": no_store(self.settings), "total": 0, "by_type": {}}
        res = self.call("stats", {})
        return {"store_exists": True, **res, **self.overview.get(res["total"])}

    # ---- writes (each is confirmed by the person first, on the page) ------------------------

    def update(self, memory_id: str, updates: dict[str, Any]) -> dict[str, Any]:
        return self.call("update", {"memory_id": memory_id, "updates": updates})

    def delete(self, memory_id: str) -> dict[str, Any]:
        res = self.call("delete", {"memory_ids": [memory_id]})
        if res["not_found"]:
            raise NotFound(f"no memory with id {memory_id}")
        return res

    def review(self, memory_id: str) -> dict[str, Any]:
        """A person's review of a flagged memory: shown to agents like any other from then on."""
        return self.call("review", {"memory_id": memory_id})

    def supersede(self, memory_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a new memory that replaces `memory_id` (the old one stays, marked superseded)."""
        old = self.call("get", {"memory_id": memory_id})
        args = {"id": new_id(), "content": fields.get("content", old.get("content")),
                "memory_type": fields.get("memory_type", old["memory_type"]),
                "importance": fields.get("importance", old["importance"]),
                "tags": fields.get("tags", old.get("tags", [])), "metadata": old.get("metadata") or {},
                "context": old.get("context") or {}, "session": self.session, "supersedes": memory_id,
                "origin": "ui"}
        return self.call("store", args)

