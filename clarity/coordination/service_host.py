"""This process's memory service and its embedding model: built once, on first need.

Guarantees:
- At most one service per process, built on first need (`service()`) by whichever thread asks first
  (the model warm-up thread and an operation may ask at once). An exclusive engine's service gets the
  lease's exclusive block (`Lease.exclusive`) for its one-time migration; a service without a lease
  (naive and direct modes) gets none.
- Before the service is built, a local store's format is checked (`clarity.engines.store_format.check`):
  a store written by a newer Clarity in a newer format is refused with StoreTooNew before any migration,
  model load or engine open (and again at every later ask, so the message stays the answer).
- Building the service opens nothing: the engine opens on the first operation (or at once after the
  hot standby took the lease, `Ownership.take_over`), and only the lease holder runs operations
  (ownership.py), except in the modes without a lease: direct (the engine is not exclusive) and naive
  (benchmarks: `run_naive` opens the engine, runs one operation and closes it, one at a time).
- The model is loaded by the owner, in the background from its first take of the lease when
  `warm_model` (a long-lived server; not in handoff mode, which keeps it between turns anyway), and
  ahead of time by the hot standby (`preload_model`), which hands it over this way: the service built
  when it takes over uses the model it loaded (a service built already keeps its own, and the preload
  then loads that one instead of a second copy).
- `finish_loading()` waits for a model load in progress (the warm-up thread, the standby's preload) and
  refuses the ones asked later: a thread left inside onnxruntime while the interpreter exits aborts
  the process. It does not close the engine (`close_engine` does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from clarity.config import Settings
from clarity.coordination.lease import Lease
from clarity.engines import engine_is_exclusive
from clarity.engines.store_format import check as check_store_format

if TYPE_CHECKING:
    from clarity.encoders.dense import Embedder
    from clarity.memory.model import Args
    from clarity.memory.service import MemoryService

log = logging.getLogger(__name__)


class BuildService(Protocol):
    """`clarity.memory.service.build_service`, or a stand-in with its signature (unit tests)."""

    def __call__(self, settings: Settings, exclusive: Callable[[], AbstractContextManager[None]] | None = None,
                 embedder: Embedder | None = None) -> MemoryService: ...


def _build_service(settings: Settings, exclusive: Callable[[], AbstractContextManager[None]] | None = None,
                   embedder: Embedder | None = None) -> MemoryService:
    from clarity.memory.service import build_service  # imports the engine libraries: only when needed

    return build_service(settings, exclusive=exclusive, embedder=embedder)


class ServiceHost:
    """Thread-safe. Writes only its own fields; the standby hands its model over through
    `preload_model`."""

    def __init__(self, settings: Settings, lease: Lease, *, warm_model: bool,
                 build: BuildService | None = None, new_embedder: Callable[[], Embedder] | None = None) -> None:
        self._settings = settings
        self._lease = lease
        self._warm = warm_model and settings.coordination.mode != "handoff"
        self._build: BuildService = build if build is not None else _build_service
        self._new_embedder = new_embedder if new_embedder is not None else self._default_embedder
        self._service: MemoryService | None = None
        self._embedder: Embedder | None = None  # loaded ahead of time by the hot standby
        self._svc_lock = threading.Lock()  # building the service, choosing the model
        self._load_lock = threading.Lock()  # held for a whole model load; `finish_loading` waits on it
        self._loading_done = False  # no model load starts any more (closing)
        self._naive_lock = threading.Lock()
        self._warm_thread: threading.Thread | None = None

    @property
    def built(self) -> MemoryService | None:
        """The service when it was built already (never builds it)."""
        return self._service

    @property
    def embedder(self) -> Embedder | None:
        """The model the standby loaded ahead of time (None when it never did)."""
        return self._embedder

    def service(self, *, exclusive_engine: bool = True) -> MemoryService:
        with self._svc_lock:  # the model warm-up thread may ask at the same time
            if self._service is None:
                if engine_is_exclusive(self._settings):
                    check_store_format(self._settings)  # StoreTooNew: nothing built, loaded or opened
                timeout_s = self._settings.coordination.call_deadline_s
                block = (lambda: self._lease.exclusive(timeout_s)) if exclusive_engine else None
                self._service = self._build(self._settings, exclusive=block, embedder=self._embedder)
            return self._service

    def close_engine(self) -> None:
        """Close the engine of the service when there is one (a step-down); the model stays loaded."""
        if self._service is not None:
            self._service.close()

    def run_naive(self, op: str, args: Args) -> dict[str, Any]:
        """Benchmark baseline: open the engine, run, close (EngineLocked when another has it open)."""
        with self._naive_lock:
            svc = self.service(exclusive_engine=False)  # no lease in naive mode: nothing to upgrade
            try:
                return svc.execute(op, args)
            finally:
                svc.close()

    # ---- the model ---------------------------------------------------------------------------

    def _default_embedder(self) -> Embedder:
        from clarity.encoders.dense import Embedder

        e = self._settings.embedding
        return Embedder(e.model, self._settings.cache_dir, e.batch_size, e.precision)

    def preload_model(self) -> bool:
        """Load the model without building the service or importing an engine (the hot standby); the
        service built later uses it. False (nothing loaded) once `finish_loading` was called."""
        with self._load_lock:
            if self._loading_done:
                return False
            with self._svc_lock:
                if self._embedder is None:
                    self._embedder = self._service.embedder if self._service is not None else self._new_embedder()
                embedder = self._embedder
            embedder.embed_one("warm up")
        return True

    def start_warmup(self) -> None:
        """Load the model in the background (once per process, only when this process warms its model):
        the first operation opens the engine meanwhile, so a failover costs the longer of the two, not
        their sum."""
        if self._warm and self._warm_thread is None:
            self._warm_thread = threading.Thread(target=self._warm_up, name="clarity-warm", daemon=True)
            self._warm_thread.start()

    def _warm_up(self) -> None:
        with self._load_lock:
            if self._loading_done:
                return
            try:
                self.service().embedder.embed_one("warm up")
            except Exception:
                log.exception("loading the embedding model failed")

    def finish_loading(self) -> None:
        """Wait for a model load in progress (bounded by one model load: it cannot be interrupted
        midway) and refuse later ones."""
        with self._load_lock:
            self._loading_done = True
        if self._warm_thread is not None and self._warm_thread is not threading.current_thread():
            self._warm_thread.join()
