"""Building the HNSW index of the Edge shard in a child process and swapping it in, without blocking
the engine's callers for long.

Why a child: `EdgeShard.optimize()` holds Python's GIL for its whole run (about a minute at 100k), so
it cannot run in the serving process. Instead (`IndexBuild.run`, in a background thread of the owner):

1. A journal starts (every `upsert`/`delete` from now on records its ids, last write wins).
2. Every point (payload, dense and BM25 vectors) is exported, a chunk at a time under the engine lock,
   to `<qdrant>/edge.build/export.jsonl`.
3. A child (`python -m clarity.engines.edge.build_child`, niced, dying with its parent (`clarity.platform.children`),
   one indexing thread so a core stays free) writes a new generation folder from the export, runs
   `optimize()`, flushes, writes `MARKER` (its count) and exits 0. The owner waits with a deadline; on
   failure or timeout it kills the child, removes its folder, logs, and keeps serving the old shard.
4. The swap, under the engine lock (the only pause): the journaled points are read from the old shard,
   the new one is loaded, the journal is applied to it (upserts with payload and vectors, deletes), the
   counts must match (else the build is abandoned, nothing lost), the new shard is flushed, then made
   current (`edge_layout.set_current`: atomic pointer), and the old shard is closed and removed.

Kill safety: a kill before the pointer switch leaves the old generation current, and its WAL holds
every acknowledged write; after the switch the new generation holds everything (the journal was
applied and flushed before). The next owner removes the stray folders (`edge_layout.remove_strays`).
Not guaranteed: that a build finishes (a kill, a failure or the deadline abandons it; the next one
starts when `index_threshold` more points have been written, or at the next open).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from clarity import faults
from clarity.engines.edge.build_child import MARKER, index_layout, indexed_count, record_line
from clarity.engines.edge.layout import build_dir, new_generation, set_current
from clarity.engines.edge.shard import open_shard, remove_tree
from clarity.errors import BuildAbandoned
from clarity.platform.children import ChildCancelled, ChildTimeout, run_child
from clarity.platform.memory import release_free_memory

__all__ = ["MARKER", "IndexBuild", "deadline_s", "index_layout", "indexed_count"]

log = logging.getLogger(__name__)

EXPORT_CHUNK = 512


def deadline_s(count: int) -> float:
    """How long a child may take: generous (measured 2.6-4.7 min at 100k on a busy 2-core machine,
    one indexing thread, niced)."""
    return 120.0 + count * 0.01


class IndexBuild:
    """One index build of `engine` (a `clarity.engines.edge.engine.EdgeEngine`). The engine calls
    `note` (holding its lock) for every write while the build is in progress."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.journal: dict[str, bool] = {}  # id -> True: upserted, False: deleted (last wins)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.swap_pause_s: float | None = None
        self.timings: dict[str, float] = {}  # export_s, child_s, swap_s (the pause), total_s
        self.result: str = "running"

    def note(self, ids: list[str], upserted: bool) -> None:
        for i in ids:
            self.journal[i] = upserted

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="clarity-index-build", daemon=True)
        self._thread.start()

    def run(self) -> bool:
        """Export, build in a child, swap. True when the new generation is current."""
        eng = self.engine
        work = build_dir(eng.base)
        gen: Path | None = None
        t0 = time.perf_counter()
        try:
            remove_tree(work)
            work.mkdir(parents=True)
            export = work / "export.jsonl"
            count = self._export(export)
            release_free_memory()  # the export's transient Python objects, back to the OS
            self.timings["export_s"] = time.perf_counter() - t0
            faults.point("index.exported")
            gen = new_generation(eng.base)
            self._child(export, gen, count)
            self.timings["child_s"] = time.perf_counter() - t0 - self.timings["export_s"]
            export.unlink()  # before the swap's fsyncs: its dirty pages are dropped, not written out
            self._swap(gen)
            self.timings["swap_s"] = self.swap_pause_s or 0.0
            self.timings["total_s"] = time.perf_counter() - t0
            self.result = "done"
            log.info("index build of %d points done: %s", count,
                     ", ".join(f"{k} {v:.3f}" for k, v in self.timings.items()))
            return True
        except BaseException as e:
            self.result = f"abandoned: {e}"
            if not self._cancel.is_set():
                log.warning("index build abandoned, serving the old shard: %s", e)
            if gen is not None and eng._dir != gen:
                remove_tree(gen)
            return False
        finally:
            remove_tree(work)
            eng._build_finished(self)

    def _export(self, export: Path) -> int:
        import qdrant_edge as q

        eng = self.engine
        cursor, count = None, 0
        with open(export, "wb") as f:
            while True:
                if self._cancel.is_set():
                    raise BuildAbandoned("the engine is closing")
                with eng._lock:
                    recs, cursor = eng._s().scroll(q.ScrollRequest(offset=cursor, limit=EXPORT_CHUNK,
                                                                   with_payload=True, with_vector=True))
                f.write(b"".join(record_line(r) for r in recs))
                count += len(recs)
                if cursor is None:
                    break
        return count

    def _child(self, export: Path, gen: Path, count: int) -> None:
        cmd = [sys.executable, "-P", "-m", "clarity.engines.edge.build_child",  # -P: not the cwd's modules
               str(export), str(gen), str(self.engine.dim), str(os.getpid())]
        try:
            done = run_child(cmd, deadline_s(count), cancel=self._cancel)
        except ChildCancelled:
            raise BuildAbandoned("the engine is closing") from None
        except ChildTimeout:
            raise BuildAbandoned(f"the build took longer than {deadline_s(count):.0f} s") from None
        if done.returncode != 0:
            raise BuildAbandoned(f"the build process exited with {done.returncode}")

    def _swap(self, gen: Path) -> None:
        import qdrant_edge as q

        eng = self.engine
        with eng._lock:
            if self._cancel.is_set() or eng._shard is None:
                raise BuildAbandoned("the engine is closing")
            t = time.perf_counter()
            old, old_dir = eng._shard, eng._dir
            ups = [i for i, u in self.journal.items() if u]
            dels: list[Any] = [i for i, u in self.journal.items() if not u]
            recs = old.retrieve(ups, with_payload=True, with_vector=True) if ups else []
            new = open_shard(gen, eng.dim)
            self.timings["swap_load_s"] = time.perf_counter() - t
            try:
                if recs:
                    new.update(q.UpdateOperation.upsert_points([q.Point(r.id, r.vector, r.payload) for r in recs]))
                if dels:
                    new.update(q.UpdateOperation.delete_points(dels))
                faults.point("index.swap")
                n_old = int(old.count(q.CountRequest(exact=True)))
                n_new = int(new.count(q.CountRequest(exact=True)))
                if n_old != n_new:
                    raise BuildAbandoned(f"the new shard counts {n_new} points, the current one {n_old}")
                if recs or dels:  # the child synced everything else
                    new.flush()
                set_current(eng.base, gen)
            except BaseException:
                new.close()
                raise
            eng._switch(new, gen, len(ups))
            self.swap_pause_s = time.perf_counter() - t
            faults.point("index.switched")
            try:
                old.close()
            except Exception as e:  # noqa: BLE001 - the old shard is no longer used
                log.warning("closing the replaced shard: %s", e)
        remove_tree(old_dir)
        release_free_memory()

    def cancel(self, timeout_s: float = 30.0) -> None:
        """Stop the build (its child is killed within `children.POLL_S`); call WITHOUT holding the
        engine lock."""
        self._cancel.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def wait(self, timeout_s: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            return not self._thread.is_alive()
        return True


