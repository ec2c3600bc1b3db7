"""The macOS/BSD code path on Linux: an interpreter whose `fcntl` lacks the F_OFD_* commands (and whose `os`
lacks posix_fadvise) picks the flock and no-op backends by itself, with no setting, in every process that
inherits the environment, `clarity serve` included. `.ci/run` runs the coordination, chaos, security and
standby tests a second time this way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.processes import cli

BSD_PYTHON = Path(__file__).resolve().parent / "harness" / "bsd_python"
PROBE = "import json; from clarity.platform import backends; print(json.dumps(backends()))"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(BSD_PYTHON), os.environ.get("PYTHONPATH", "")])}


def test_an_interpreter_without_ofd_locks_takes_the_flock_path() -> None:
    forced = json.loads(subprocess.run([sys.executable, "-c", PROBE], env=_env(), capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    plain = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and "bsd_python" not in p]
    native = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                                       timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(plain)}).stdout)
    assert forced["locks"] == "flock" and forced["pagecache"] == "none"
    if sys.platform.startswith("linux"):
        assert native["locks"] == "ofd" and native["pagecache"] == "fadvise"


def test_a_served_store_reports_the_flock_backend_and_works(home: Path) -> None:
    out = cli(home, "store", "the flock backend stores too", env=_env())
    assert out.returncode == 0
    status = json.loads(cli(home, "status", "--json", env=_env()).stdout)
    assert status["this_process"]["platform"]["locks"] == "flock"
    listed = json.loads(cli(home, "list", "--json", env=_env()).stdout)
    assert [m["content"] for m in listed["memories"]] == ["the flock backend stores too"]


def test_windows_gets_one_line_that_says_to_use_wsl(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from clarity import cli

    monkeypatch.setattr("clarity.platform.POSIX", False)  # what os.name == "nt" gives
    assert cli.main(["status", "--home", "/nonexistent/never-created"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "WSL 2" in err
    assert not Path("/nonexistent/never-created").exists()
