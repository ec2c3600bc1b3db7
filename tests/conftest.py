"""Shared fixtures: a fresh home per test and real `clarity serve` sessions driven over MCP.

The helpers live in `tests.harness` (shared with scripts/bench.py and scripts/stress.py); the names
below stay importable from `tests.conftest` for the tests that use them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.harness.processes import cli, kill, wait_until
from tests.harness.processes import cli_status as _cli_status
from tests.harness.sessions import all_memories, open_sessions, owner_session, pid_of

__all__ = ["all_memories", "cli", "home", "kill", "open_sessions", "owner_session", "pid_of", "run_async",
           "status", "wait_until"]

for _var in [v for v in os.environ if v.startswith("CLARITY_")]:
    del os.environ[_var]

# `.ci/run`'s second pass sets EXPECT_LOCK_BACKEND=flock with tests/harness/bsd_python on PYTHONPATH (the
# interpreter then lacks F_OFD_*, as on macOS): fail at once if the backend it means to test is not in use
_EXPECTED_LOCKS = os.environ.get("EXPECT_LOCK_BACKEND")


@pytest.fixture(autouse=True, scope="session")
def _lock_backend_as_expected() -> None:
    from clarity.platform import locks

    assert _EXPECTED_LOCKS in (None, locks.BACKEND), \
        f"this run means to test the {_EXPECTED_LOCKS} lock backend, but the interpreter gives {locks.BACKEND}"


@pytest.fixture(autouse=True, scope="session")
def _one_model_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every home of this run (and every server it starts: CLARITY_* reaches them) shares one optimised
    model copy instead of writing 90 MB per home. Tests of that cache unset the variable."""
    os.environ["CLARITY_MODEL_CACHE"] = str(tmp_path_factory.mktemp("models"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real default model, one per test module (it loads on first use)."""
    from clarity.config import DEFAULT_MODEL
    from clarity.encoders.dense import Embedder

    return Embedder(DEFAULT_MODEL, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def svc(home: Path, embedder: Any) -> Iterator[Any]:
    """A MemoryService in this process on `home`'s Edge store, with the module's model; closed after the test."""
    from clarity.config import load_settings
    from clarity.engines.edge.engine import EdgeEngine, edge_dir
    from clarity.memory.service import MemoryService

    s = load_settings(home)
    service = MemoryService(s, lambda: EdgeEngine(edge_dir(s.qdrant_path)), embedder)
    yield service
    service.close()


def run_async(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def status(home: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`clarity status --json` of `home`."""
    return _cli_status(home, env=env)
