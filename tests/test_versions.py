"""Two Clarity versions on one store (issue 16, finding 6).

In process: the store records its format and the Clarity that wrote it, and a store of a newer format is
refused before anything is opened; the version is bumped where the package and the CLI read it.

With two real installs: a wheel of Clarity 0.1.0 (`OLD_COMMIT`, the last commit before the versions
work: protocol 1, frames with an absolute deadline) is built from this repository's history and installed
into a second virtualenv once per test session (under the pytest tmp folder); `clarity serve` sessions of
both versions then share one home:
- an older owner: the newer session's calls fail at once with the one message (the old owner is never sent
  anything it could misread), the old session keeps serving, and once it exits the newer one serves every
  memory the old one stored;
- a newer owner: an older session gets the same words through the old reply format and shows them; the
  newer owner keeps serving; once it exits the older session serves the same store.
Skipped, with the reason, where the old wheel cannot be built (no git history, no package index).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
from mcp.client.stdio import StdioServerParameters

from clarity import __version__
from clarity.config import Settings, load_settings
from clarity.coordination import wire
from clarity.coordination.coordinator import Coordinator
from clarity.engines import store_format
from clarity.errors import StoreTooNew, ToolCallError
from clarity.platform import files
from clarity.session_client import SessionClient, server_params

REPO = Path(__file__).resolve().parent.parent
OLD_COMMIT = "36be7dc"  # Clarity 0.1.0, protocol 1
OLD_VERSION = "0.1.0"


# ---- in process: the store's format ----------------------------------------------------------

@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings(home)


@pytest.fixture
def coordinator(settings: Settings) -> Iterator[Coordinator]:
    c = Coordinator(settings)
    yield c
    c.close()


def test_the_version_is_0_2_0_in_the_package_and_its_metadata() -> None:
    assert __version__ == "0.2.0"
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == __version__
    assert wire.PROTOCOL == 2


def test_opening_a_store_records_its_format_and_this_clarity(coordinator: Coordinator, settings: Settings) -> None:
    path = settings.layout.store_format
    assert not path.exists()
    coordinator.call("stats", {})  # takes the lease and opens the engine
    assert json.loads(path.read_bytes()) == {"format": store_format.FORMAT, "clarity": __version__}
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.stat().st_mtime_ns
    coordinator.own.step_down("test")  # the next open finds the file as it should be: no write
    coordinator.call("stats", {})
    assert path.stat().st_mtime_ns == before


def test_a_store_last_opened_by_another_clarity_of_the_same_format_is_recorded_as_ours(
        coordinator: Coordinator, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    files.ensure_private_dir(settings.layout.qdrant)
    files.publish_json(settings.layout.store_format, {"format": store_format.FORMAT, "clarity": "0.1.9"})
    with caplog.at_level("INFO", logger="clarity.engines.store_format"):
        coordinator.call("stats", {})
    assert json.loads(settings.layout.store_format.read_bytes())["clarity"] == __version__
    assert "written by Clarity 0.1.9" in caplog.text


def test_a_store_of_a_newer_format_is_refused_before_anything_is_opened(coordinator: Coordinator,
                                                                         settings: Settings) -> None:
    newer = {"format": store_format.FORMAT + 1, "clarity": "0.9.0"}
    files.ensure_private_dir(settings.layout.qdrant)
    files.publish_json(settings.layout.store_format, newer)
    for _ in range(2):  # the same answer every time, never a retry to the deadline
        t0 = time.monotonic()
        with pytest.raises(StoreTooNew) as e:
            coordinator.call("store", {"id": str(uuid.uuid4()), "content": "must not land"})
        assert time.monotonic() - t0 < 5
    msg = e.value.message
    assert f"written by Clarity 0.9.0 in store format {store_format.FORMAT + 1}" in msg
    assert f"this is Clarity {__version__}, which reads store format {store_format.FORMAT} at most" in msg
    assert "nothing was opened" in msg and not e.value.retryable
    assert coordinator.services.built is None  # no service, so no model and no engine
    assert not settings.layout.edge_base.exists() and not (settings.layout.qdrant / "edge.current").exists()
    assert json.loads(settings.layout.store_format.read_bytes()) == newer  # left as it was
    assert coordinator.status()["versions"]["problem"] == msg


def test_a_garbage_format_file_is_taken_for_format_1_and_rewritten(coordinator: Coordinator,
                                                                  settings: Settings) -> None:
    files.ensure_private_dir(settings.layout.qdrant)
    files.publish(settings.layout.store_format, b"not json")
    assert store_format.read(settings) == {"format": 1, "clarity": None, "recorded": False}
    coordinator.call("stats", {})
    assert json.loads(settings.layout.store_format.read_bytes())["clarity"] == __version__


# ---- two real installs on one store --------------------------------------------------------------

def _run(cmd: list[str], timeout_s: float, cwd: Path) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
    return done.stdout


@pytest.fixture(scope="session")
def old_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a virtualenv holding Clarity 0.1.0, built once per test session from
    `OLD_COMMIT` (its tree taken with `git archive`: this checkout is not touched)."""
    base = tmp_path_factory.mktemp("clarity-0.1.0")
    python = base / "venv" / "bin" / "python"
    try:
        tree = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", OLD_COMMIT], capture_output=True,
                              timeout=120, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tree)) as tar:  # this repository's own files
            if hasattr(tarfile, "data_filter"):
                tar.extractall(base / "src", filter="data")
            else:  # Python < 3.11.4
                tar.extractall(base / "src")
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(base / "src")],
             300, base)
        (wheel,) = (base / "dist").glob("*.whl")
        _run([sys.executable, "-m", "venv", str(base / "venv")], 120, base)
        _run([str(python), "-m", "pip", "install", "-q", str(wheel)], 600, base)
        version = _run([str(python), "-c", "import clarity; print(clarity.__version__)"], 60, base).strip()
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError, tarfile.TarError) as e:
        pytest.skip(f"cannot build and install Clarity {OLD_VERSION} (commit {OLD_COMMIT}) here: {e}")
    assert version == OLD_VERSION, version
    return python


def _old_params(python: Path, home: Path) -> StdioServerParameters:
    """`clarity serve` of the old install: its own interpreter, run outside this checkout (so `-m clarity`
    finds the installed package), with a model cache of its own."""
    base = python.parent.parent.parent
    env = {k: v for k, v in server_params(home).env.items() if not k.startswith(("CLARITY_", "PYTHONPATH"))}
    env["CLARITY_MODEL_CACHE"] = str(base / "models")
    return StdioServerParameters(command=str(python), args=["-m", "clarity", "serve", "--home", str(home)], env=env,
                                 cwd=str(base))


def _old_cli(python: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = _old_params(python, home)
    return subprocess.run([p.command, "-m", "clarity", *args, "--home", str(home)], capture_output=True, text=True,
                          timeout=120, env=p.env, cwd=p.cwd)


def _new_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = server_params(home)
    return subprocess.run([p.command, "-m", "clarity", *args, "--home", str(home)], capture_output=True, text=True,
                          timeout=120, env=p.env, cwd=REPO)


@dataclass
class Served:
    """One `clarity serve` session, run in its own task (anyio cancel scopes are left in the task that
    entered them): `ready` once it answered initialize, `stop` to close it, `done` once closed."""

    params: StdioServerParameters
    log: Path
    client: SessionClient | None = None
    error: str | None = None
    pid: int | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        errlog: TextIO = self.log.open("a", encoding="utf-8")
        try:
            client = SessionClient(self.log.parent, errlog=errlog, read_timeout_s=60)
            client.params = self.params
            async with client:
                self.client = client
                self.ready.set()
                with anyio.move_on_after(300):
                    await self.stop.wait()
        except Exception as e:  # noqa: BLE001 - reported by `start`
            self.error = f"{type(e).__name__}: {e}"
        finally:
            errlog.close()
            self.ready.set()
            self.done.set()

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        assert self.client is not None, self.error
        return await self.client.call(tool, args)

    async def close(self) -> None:
        self.stop.set()
        with anyio.fail_after(60):
            await self.done.wait()


async def _start(tg: Any, params: StdioServerParameters, log: Path) -> Served:
    s = Served(params, log)
    tg.start_soon(s.run)
    with anyio.fail_after(120):
        await s.ready.wait()
    assert s.client is not None, f"the session did not start: {s.error}; its log: {log.read_text()[-2000:]}"
    st = await s.call("coordination_status")
    s.pid = st["this_process"]["pid"]
    return s


async def _contents(s: Served) -> list[str]:
    res = await s.call("list_memories", {"limit": 1000, "include_content": True})
    assert res["total"] == len(res["memories"])
    return sorted(m["content"] for m in res["memories"])


def _mismatch(owner: str, pid: int | None, owner_protocol: int, me: str, protocol: int) -> str:
    return (f"the store is owned by Clarity {owner} (pid {pid}, protocol {owner_protocol}); this session is "
            f"Clarity {me} (protocol {protocol}): restart the older sessions")


@pytest.mark.timeout(300)
def test_a_new_session_meets_an_old_owner_refuses_clearly_then_serves_what_the_old_one_stored(
        old_python: Path, home: Path, tmp_path: Path) -> None:
    old_memories = [f"stored by Clarity {OLD_VERSION}, number {i}" for i in range(5)]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            old = await _start(tg, _old_params(old_python, home), tmp_path / "old.log")
            for text in old_memories[:3]:
                assert (await old.call("store_memory", {"content": text}))["stored"]
            assert (await old.call("coordination_status"))["owner"]["pid"] == old.pid  # the old one owns

            new = await _start(tg, server_params(home), tmp_path / "new.log")
            want = _mismatch(OLD_VERSION, old.pid, 1, __version__, wire.PROTOCOL)
            versions = (await new.call("coordination_status"))["versions"]
            assert versions["owner"] == {"clarity": OLD_VERSION, "protocol": 1, "pid": old.pid}
            assert versions["this_process"]["clarity"] == __version__ and versions["problem"] == want
            for tool, args in [("store_memory", {"content": "must not reach the old owner"}),
                               ("list_memories", {"limit": 5}), ("store_memory", {"content": "nor this"})]:
                t0 = time.monotonic()
                with pytest.raises(ToolCallError) as e:
                    await new.call(tool, args)
                assert want in e.value.message, e.value.message
                assert time.monotonic() - t0 < 5  # at once: not retried until the call's deadline

            # the CLI of the new version says the same, once; its status shows every version
            cli = await anyio.to_thread.run_sync(lambda: _new_cli(home, "store", "from the new CLI"))
            assert cli.returncode == 2 and cli.stderr.count(want) == 1, cli.stderr
            cli = await anyio.to_thread.run_sync(lambda: _new_cli(home, "status", "--json"))
            st = json.loads(cli.stdout)
            assert (st["owner"]["version"], st["owner"]["protocol"], st["owner"]["pid"]) == (OLD_VERSION, 1, old.pid)
            assert st["versions"]["problem"] == want and st["this_process"]["version"] == __version__

            # the old owner was neither wedged nor fed anything it could misread
            for text in old_memories[3:]:
                assert (await old.call("store_memory", {"content": text}))["stored"]
            assert await _contents(old) == sorted(old_memories)

            await old.close()  # the older session exits: the newer one serves, without a restart
            end = time.monotonic() + 30
            while True:
                try:
                    assert (await new.call("store_memory", {"content": "stored by the new one"}))["stored"]
                    break
                except ToolCallError:
                    assert time.monotonic() < end, "the new session did not serve after the old owner left"
                    await anyio.sleep(0.2)
            assert await _contents(new) == sorted([*old_memories, "stored by the new one"])
            st = await new.call("coordination_status")
            assert st["owner"]["pid"] == new.pid and st["versions"]["problem"] is None
            assert st["versions"]["owner"] == {"clarity": __version__, "protocol": wire.PROTOCOL, "pid": new.pid}
            assert st["versions"]["store"] == {"format": store_format.FORMAT, "clarity": __version__,
                                               "recorded": True}
            await new.close()

    anyio.run(main)
    assert "Traceback" not in (tmp_path / "new.log").read_text()


@pytest.mark.timeout(300)
def test_an_old_session_meets_a_new_owner_shows_the_same_words_and_the_store_stays_readable_by_it(
        old_python: Path, home: Path, tmp_path: Path) -> None:
    # the home is made by the old CLI: Clarity 0.1.0 refuses a config.json that names settings it lacks
    made = _old_cli(old_python, home, "store", "made by the old CLI")
    assert made.returncode == 0, made.stderr

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            new = await _start(tg, server_params(home), tmp_path / "new.log")
            assert (await new.call("store_memory", {"content": "stored by the new owner"}))["stored"]
            assert (await new.call("coordination_status"))["owner"]["pid"] == new.pid

            old = await _start(tg, _old_params(old_python, home), tmp_path / "old.log")
            want = _mismatch(__version__, new.pid, wire.PROTOCOL, "0.1.x", 1)
            t0 = time.monotonic()
            with pytest.raises(ToolCallError) as e:
                await old.call("store_memory", {"content": "must not be run by the new owner"})
            assert want in e.value.message, e.value.message  # shown by 0.1.0 as it came
            assert time.monotonic() - t0 < 10

            assert (await new.call("store_memory", {"content": "the new owner still serves"}))["stored"]
            await new.close()  # the newer session exits: the old one takes the store over and reads it all
            end = time.monotonic() + 30
            while True:
                try:
                    contents = await _contents(old)
                    break
                except ToolCallError:
                    assert time.monotonic() < end, "the old session did not serve after the new owner left"
                    await anyio.sleep(0.2)
            assert contents == sorted(["made by the old CLI", "stored by the new owner", "the new owner still serves"])
            await old.close()

    anyio.run(main)
