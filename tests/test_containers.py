"""Containers without Docker (issue 7 §5): each session runs as pid 1 in its own pid namespace
(`unshare --pid --fork --mount-proc`), all sharing one home, like the seed's Docker setup."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from mcp.client.stdio import StdioServerParameters

from clarity.session_client import SessionClient, server_params
from tests import conftest
from tests.conftest import all_memories, run_async, status

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) to start sessions in their own pid namespace")


def _contained(home: Path, env: dict[str, str] | None = None, **kw: Any) -> SessionClient:
    s = SessionClient(home, env=env, **kw)
    plain = server_params(home, env)
    s.params = StdioServerParameters(command="unshare", args=["--pid", "--fork", "--mount-proc", plain.command,
                                                              *plain.args], env=plain.env)
    return s


def _host_pid_of(home: Path, namespace: str) -> int:
    """The pid, as seen here, of the `clarity serve` process of `home` running in pid namespace `namespace`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            ns = os.readlink(f"/proc/{entry}/ns/pid")
        except OSError:
            continue
        if ns == namespace and b"serve" in cmd and os.fsencode(home) in cmd and cmd[0] != b"unshare":
            return int(entry)
    raise AssertionError(f"no clarity serve in {namespace}")


def test_sessions_in_their_own_pid_namespaces_share_a_store_and_fail_over(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.harness.sessions

    monkeypatch.setattr(tests.harness.sessions, "SessionClient", _contained)

    async def main() -> None:
        async with conftest.open_sessions(home, 3) as sessions:
            for i, s in enumerate(sessions):
                await s.call("store_memory", {"content": f"container {i} was here", "tags": ["ns"]})
            sts: list[Any] = [await s.call("coordination_status") for s in sessions]
            assert [st["this_process"]["pid"] for st in sts] == [1, 1, 1]
            assert sorted(st["this_process"]["role"].replace("standby", "peer") for st in sts) == \
                ["owner", "peer", "peer"]  # one of the two may already be the hot standby
            for st in sts:
                if st["this_process"]["role"] in ("peer", "standby"):
                    o = st["owner"]
                    assert o["pid"] == 1 and o["state"] == "serving" and o["same_pid_namespace"] is False
                    assert "pid 1 in another pid namespace" in o["where"]
            host = status(home)["owner"]
            assert host["pid"] == 1 and host["state"] == "serving" and "another pid namespace" in host["where"]
            old_epoch = host["epoch"]
            owner_i = next(i for i, st in enumerate(sts) if st["this_process"]["role"] == "owner")
            os.kill(_host_pid_of(home, host["pid_namespace"]), signal.SIGKILL)
            rest = [s for i, s in enumerate(sessions) if i != owner_i]
            t0 = time.monotonic()
            await rest[0].call("store_memory", {"content": "after the owner's container died", "tags": ["ns"]})
            assert time.monotonic() - t0 < 30
            assert len(await all_memories(rest[1], ["ns"])) == 4
            host = status(home)["owner"]
            assert host["epoch"] > old_epoch and host["state"] == "serving" and host["pid"] == 1

    run_async(main)
