"""The model's optimised copies (float, and the int8 one made from it) live once per user (never in a
project) and are safe to share: processes starting together on an empty cache leave one complete copy of
each and embed the same vectors.

These tests unset the run's shared CLARITY_MODEL_CACHE (tests/conftest.py) and give the processes an
empty `$XDG_CACHE_HOME` of their own: the default per-user location is what they exercise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clarity.encoders.dense import models_dir

WORKER = """
import json, logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(process)d %(name)s: %(message)s")
from clarity.config import DEFAULT_MODEL
from clarity.encoders.dense import Embedder
import onnxruntime, tokenizers  # the slow imports happen before the start line
go = Path(sys.argv[2])
print("ready", flush=True)
end = time.monotonic() + 120
while not go.exists():
    if time.monotonic() > end:
        sys.exit("no go within 120 s")
    time.sleep(0.005)
vectors = Embedder(DEFAULT_MODEL, Path(sys.argv[1])).embed(["the api listens on port 8080", "use pytest"])
print(json.dumps(vectors), flush=True)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CLARITY_MODEL_CACHE", "XDG_CACHE_HOME")}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "user")}


def test_four_processes_on_an_empty_cache_leave_one_complete_copy(tmp_path: Path) -> None:
    go = tmp_path / "go"
    homes = [tmp_path / f"project{i}" / ".claude" / "alunai-clarity" / "cache" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(h), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(tmp_path)) for h in homes]
    try:
        for p in procs:  # every one imported everything and waits: then all start at once
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
    vectors = [np.array(json.loads(out.strip().splitlines()[-1])) for out, _err in results]
    for v in vectors[1:]:
        assert v.shape == (2, 384) and np.allclose(v, vectors[0], atol=1e-6)

    cache = tmp_path / "xdg" / "clarity"
    entries = sorted(p.name for p in cache.iterdir())
    originals = [n for n in entries if n.startswith("all-MiniLM-L6-v2-int8-") and "-ort" not in n]
    optimised = [n for n in entries if "-ort" in n]
    assert len(originals) == 1 and len(optimised) == 2, entries  # the float copy and the int8 one (default)
    assert not [n for n in entries if n.startswith(".")], entries  # no temporary copy left behind
    for name in optimised:
        opt = cache / name
        assert sorted(p.name for p in opt.iterdir()) == ["model.onnx", "model.onnx.data", "probe.json"]
        assert (opt / "model.onnx.data").stat().st_size > 50_000_000
        assert len(json.loads((opt / "probe.json").read_text())) == 384
    # one process built each; the others waited for it instead of building copies of their own
    for kind in ("optimised", "int8"):
        builds = sum(err.count(f"building the {kind} embedding model") for _out, err in results)
        saved = sum(err.count(f"saved the {kind} embedding model") for _out, err in results)
        assert builds == saved == 1, (kind, [err[-500:] for _o, err in results])
    # nothing of the model under any project
    assert not any(h.exists() for h in homes)


def test_an_unusable_user_cache_falls_back_to_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.delenv("CLARITY_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    store_cache = tmp_path / "home" / "cache"
    with caplog.at_level("WARNING"):
        assert models_dir(store_cache) == store_cache / "models"
    assert f"cannot use the model cache {blocker / 'clarity'}" in caplog.text
    assert blocker.read_text() == "a file where the cache folder should go"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_dir(store_cache) == tmp_path / "xdg" / "clarity"
    assert (tmp_path / "xdg" / "clarity").is_dir() and not store_cache.exists()
