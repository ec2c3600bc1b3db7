"""Clarity installs in one command, the way MCP users install servers: the sdist and the wheel build and pass
`twine check`; the WHEEL (not an editable install) goes into a fresh virtualenv from the package registries,
and from there `alunai-clarity` runs its CLI and serves a real MCP client over stdio; `uvx --from <checkout>
alunai-clarity serve` and `uv tool install <wheel>` do the same without pip.

The build and the install happen once per run (module-scoped fixtures), on a copy of the checkout's files,
so the working tree gets no build output. The timings are printed (`-s` shows them) and named in failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
_UNCOPIED = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "*.egg-info", "build", "dist",
                                   ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".claude")
MEMORY = "The nightly export job writes its files to the bucket acme-exports, prefix nightly/"
QUESTION = "where does the nightly export put its files"

TIMINGS: dict[str, float] = {}


def timing(name: str, seconds: float) -> None:
    TIMINGS[name] = round(seconds, 2)
    print(f"[timing] {name}: {seconds:.2f} s")


def checkout_copy(dest: Path) -> Path:
    """The files a fresh clone of this checkout has (tracked, plus new ones git does not ignore), links kept
    as links; without git, the tree less virtualenvs, caches and build output."""
    listed = None
    if shutil.which("git") and (REPO / ".git").exists():
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard"],
                             capture_output=True, timeout=60)
        listed = out.stdout.decode().split("\0") if out.returncode == 0 else None
    if listed is None:
        shutil.copytree(REPO, dest, symlinks=True, ignore=_UNCOPIED)
        return dest
    for name in filter(None, listed):
        src, dst = REPO / name, dest / name
        if not os.path.lexists(src):  # deleted in the working tree, not yet in git
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache for the whole run (this module and tests/test_claude_plugin.py): the first user pays the
    downloads from the registry, as a new machine does."""
    return tmp_path_factory.getbasetemp() / "uv-cache"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment less what would point a new install at the checkout (PYTHONPATH, VIRTUAL_ENV), uv's
    settings and Clarity's, except CLARITY_MODEL_CACHE: the run's model folder (tests/conftest.py) rather
    than the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLARITY_", "UV_", "VIRTUAL_ENV", "PYTHONPATH"))
           or k == "CLARITY_MODEL_CACHE"}
    env.update(extra)
    return env


def uv_env(cache: Path, **extra: str) -> dict[str, str]:
    """uv with its own cache, never downloading a Python, this interpreter's bin first on PATH."""
    return clean_env(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", UV_CACHE_DIR=str(cache),
                     UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", **extra)


def uvx() -> str | None:
    return shutil.which("uvx", path=str(VENV_BIN)) or shutil.which("uvx")


async def store_and_find(params: StdioServerParameters, errlog: Path) -> dict[str, Any]:
    """Starts the server, stores MEMORY and finds it with QUESTION through the `mcp` client; answers the
    tools, the two results and the seconds to the initialize answer and to the first stored memory."""
    t0 = time.monotonic()
    with errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err), read_timeout_seconds=180) as client:
            ready = time.monotonic() - t0
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            stored = await client.call_tool("store_memory", {"content": MEMORY, "memory_type": "fact"})
            first_store = time.monotonic() - t0
            found = await client.call_tool("retrieve_memory", {"query": QUESTION, "limit": 3})
    return {"tools": tools, "stored": stored.structured_content, "found": found.structured_content,
            "stored_error": stored.is_error, "found_error": found.is_error, "ready": ready,
            "first_store": first_store}


def check_round_trip(result: dict[str, Any], errlog: Path) -> None:
    log = errlog.read_text()[-3000:]
    assert {"store_memory", "retrieve_memory"} <= set(result["tools"]), (result["tools"], log)
    assert not result["stored_error"] and result["stored"]["stored"] is True, (result["stored"], log)
    assert not result["found_error"], (result["found"], log)
    contents = [hit["content"] for hit in result["found"]["memories"]]
    assert contents and contents[0] == MEMORY, (result["found"], log)
    assert result["found"]["memories"][0]["id"] == result["stored"]["id"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build` (the sdist, then the wheel built from the sdist), and `twine check --strict`."""
    base = tmp_path_factory.mktemp("install")
    src = checkout_copy(base / "src")
    out = base / "dist"
    t0 = time.monotonic()
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)],
                           capture_output=True, text=True, timeout=300)
    timing("python -m build (sdist, then wheel from the sdist)", time.monotonic() - t0)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = out.glob("alunai_clarity-*.tar.gz")
    (wheel,) = out.glob("alunai_clarity-*-py3-none-any.whl")
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout
    return {"base": base, "src": src, "sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def venv(dist: dict[str, Path]) -> Path:
    """A fresh virtualenv with the wheel installed by pip from the registries (its dependencies too)."""
    root = dist["base"] / "venv"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, timeout=120)
    env = clean_env()
    installed = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", str(dist["wheel"])],
                               capture_output=True, text=True, timeout=600, env=env, cwd=dist["base"])
    timing("fresh virtualenv + pip install of the wheel", time.monotonic() - t0)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return root


def test_the_wheel_and_sdist_carry_both_commands(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as z:
        (entry_points,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode()
    assert "alunai-clarity = clarity.cli:main" in scripts and "clarity = clarity.cli:main" in scripts, scripts


def test_the_installed_wheel_runs_its_cli(venv: Path, tmp_path: Path) -> None:
    exe = venv / "bin" / "alunai-clarity"
    assert exe.is_file() and (venv / "bin" / "clarity").is_file()
    env = clean_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)

    helped = run("--help")
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stdout + helped.stderr
    if "demo" in helped.stdout:  # the main job, from the installed package alone
        t0 = time.monotonic()
        demo = run("demo", "--home", str(tmp_path / "demo"))
        timing("alunai-clarity demo from the fresh virtualenv", time.monotonic() - t0)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    home = str(tmp_path / "cli")
    stored = run("store", MEMORY, "--type", "fact", "--home", home, "--json")
    assert stored.returncode == 0, stored.stdout + stored.stderr
    found = run("search", QUESTION, "--home", home, "--json")
    assert found.returncode == 0, found.stdout + found.stderr
    hits = orjson.loads(found.stdout)["memories"]
    assert hits and hits[0]["id"] == orjson.loads(stored.stdout)["id"], found.stdout


def test_the_installed_wheel_serves_an_mcp_client(venv: Path, tmp_path: Path) -> None:
    env = clean_env()
    params = StdioServerParameters(command=str(venv / "bin" / "alunai-clarity"),
                                   args=["serve", "--home", str(tmp_path / "home")], env=env, cwd=str(tmp_path))
    errlog = tmp_path / "serve.err"
    result = anyio.run(store_and_find, params, errlog)
    timing("first `alunai-clarity serve` (fresh virtualenv): initialize answered", result["ready"])
    timing("first `alunai-clarity serve` (fresh virtualenv): first memory stored (model loaded)",
           result["first_store"])
    check_round_trip(result, errlog)


@pytest.mark.skipif(uvx() is None, reason="needs uv (`pip install uv`, in the dev extras)")
def test_uvx_from_the_checkout_serves_an_mcp_client(dist: dict[str, Path], tmp_path: Path,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = uv_cache(tmp_path_factory)
    cold = not cache.exists()
    uv = uvx()
    assert uv is not None
    params = StdioServerParameters(command=uv, args=["--from", str(dist["src"]), "alunai-clarity", "serve",
                                                     "--home", str(tmp_path / "home")],
                                   env=uv_env(cache), cwd=str(tmp_path))
    errlog = tmp_path / "uvx.err"
    result = anyio.run(store_and_find, params, errlog)
    state = "empty uv cache" if cold else "uv cache already filled by this run"
    timing(f"first `uvx --from <checkout> alunai-clarity serve` ({state}): initialize answered", result["ready"])
    timing(f"first `uvx --from <checkout> alunai-clarity serve` ({state}): first memory stored",
           result["first_store"])
    check_round_trip(result, errlog)

    # `uv tool install` puts `alunai-clarity` (and `clarity`) on the PATH, from the wheel here, from PyPI later
    tools, bin_dir = tmp_path / "tools", tmp_path / "bin"
    env = uv_env(cache, UV_TOOL_DIR=str(tools), UV_TOOL_BIN_DIR=str(bin_dir))
    installed = subprocess.run([str(Path(uv).with_name("uv")), "tool", "install", str(dist["wheel"])], env=env,
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    version = subprocess.run([str(bin_dir / "alunai-clarity"), "--version"], capture_output=True, text=True,
                             timeout=120, env=env)
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version.returncode == 0 and expected in version.stdout + version.stderr, version
