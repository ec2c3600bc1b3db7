"""ServiceHost (coordination/service_host.py) in-process, with a real Lease in `tmp_path`. The memory service
and its model are the fakes of tests/coordination/support.py: this tests when the service is built, with
which model and lock, and how model loads end, not the service itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from clarity.coordination.lease import Lease
from clarity.coordination.service_host import ServiceHost
from clarity.platform import locks
from tests.coordination.support import FakeBuild, FakeEmbedder, FakeService, settings_for, wait_for


def _host(tmp_path: Path, build: FakeBuild, *, warm_model: bool = False, mode: str = "forward",
          embedders: list[FakeEmbedder] | None = None) -> tuple[ServiceHost, Lease]:
    settings = settings_for(tmp_path, mode=mode)
    lease = Lease(settings.coordination_dir)
    made = embedders if embedders is not None else []

    def new_embedder() -> FakeEmbedder:
        made.append(FakeEmbedder())
        return made[-1]

    return ServiceHost(settings, lease, warm_model=warm_model, build=build, new_embedder=new_embedder), lease  # type: ignore[arg-type]


def test_the_service_is_built_once_with_the_leases_exclusive_block(tmp_path: Path) -> None:
    build = FakeBuild()
    host, lease = _host(tmp_path, build)
    assert host.built is None
    got: list[object] = []
    ts = [threading.Thread(target=lambda: got.append(host.service())) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert len(build.calls) == 1 and all(s is build.service for s in got) and host.built is build.service
    block = build.calls[0]["exclusive"]
    assert lease.try_acquire(None, "forward")
    try:
        with block():  # the engine's one-time migration runs in it
            assert locks.probe(lease.records_path) is locks.LockState.EXCLUSIVE
        assert locks.probe(lease.records_path) is locks.LockState.SHARED
    finally:
        lease.release()


def test_a_service_without_a_lease_gets_no_exclusive_block_and_naive_runs_open_and_close(tmp_path: Path) -> None:
    build = FakeBuild()
    host, _ = _host(tmp_path, build, mode="naive")
    assert host.run_naive("list", {}) == {"op": "list", "args": {}, "ran_here": True}
    assert host.run_naive("stats", {})["op"] == "stats"
    svc = build.service
    assert svc is not None and build.calls[0]["exclusive"] is None
    assert svc.closed == 2 and not svc.engine_open  # every naive call closes the engine after it


def test_the_standby_preloaded_model_goes_to_the_service_built_later(tmp_path: Path) -> None:
    build, made = FakeBuild(), []
    host, _ = _host(tmp_path, build, embedders=made)
    assert host.embedder is None
    assert host.preload_model() and host.preload_model()
    assert len(made) == 1 and made[0].loaded and host.embedder is made[0]
    assert host.service().embedder is made[0] and build.calls[0]["embedder"] is made[0]


def test_a_preload_after_the_service_was_built_reuses_its_model(tmp_path: Path) -> None:
    own_model = FakeEmbedder()
    build, made = FakeBuild(FakeService(own_model)), []
    host, _ = _host(tmp_path, build, embedders=made)
    host.service()
    assert host.preload_model()
    assert made == [] and host.embedder is own_model and own_model.loaded


def test_finish_loading_waits_for_a_preload_in_progress_and_refuses_later_ones(tmp_path: Path) -> None:
    gate = threading.Event()
    slow = FakeEmbedder(gate)
    settings = settings_for(tmp_path)
    host = ServiceHost(settings, Lease(settings.coordination_dir), warm_model=False, build=FakeBuild(),  # type: ignore[arg-type]
                       new_embedder=lambda: slow)  # type: ignore[arg-type,return-value]
    loading = threading.Thread(target=host.preload_model)
    loading.start()
    assert slow.started.wait(5)
    finishing = threading.Thread(target=host.finish_loading)
    finishing.start()
    time.sleep(0.2)
    assert finishing.is_alive()  # a thread inside the model load must end first
    gate.set()
    finishing.join(10)
    loading.join(10)
    assert not finishing.is_alive() and slow.calls == 1
    assert not host.preload_model() and slow.calls == 1


def test_the_warm_up_runs_once_in_the_background_and_not_in_handoff_mode(tmp_path: Path) -> None:
    build = FakeBuild()
    host, _ = _host(tmp_path / "a", build, warm_model=True)
    host.start_warmup()
    host.start_warmup()
    assert wait_for(lambda: build.service is not None and build.service.embedder.loaded, 5)
    host.finish_loading()
    assert not [t for t in threading.enumerate() if t.name == "clarity-warm"]
    assert build.service is not None and build.service.embedder.calls == 1
    for warm, mode in ((True, "handoff"), (False, "forward")):
        other = FakeBuild()
        host, _ = _host(tmp_path / f"{warm}-{mode}", other, warm_model=warm, mode=mode)
        host.start_warmup()
        time.sleep(0.1)
        assert other.calls == [] and not [t for t in threading.enumerate() if t.name == "clarity-warm"]


def test_close_engine_closes_only_a_built_service(tmp_path: Path) -> None:
    build = FakeBuild()
    host, _ = _host(tmp_path, build)
    host.close_engine()
    assert build.calls == []
    host.service().open_engine()
    host.close_engine()
    assert build.service is not None and build.service.closed == 1 and not build.service.engine_open
