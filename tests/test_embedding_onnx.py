"""The default model on onnxruntime directly: fastembed's vectors, a cheap load, a self-healing cache."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from clarity.config import DEFAULT_MODEL
from clarity.encoders.dense import Embedder, default_model_dir
from clarity.encoders.onnx_model import MAX_BATCH_TOKENS

TEXTS = [
    "The API server listens on port 8080",
    "",  # empty: only [CLS] [SEP]
    " \n\t ",
    ".",
    "ünïcødé: 日本語のテキスト, emojis 🎉🚀, Ελληνικά, العربية",
    "word " * 400,  # far past the 256-token truncation
    "a" * 5000,
    " ".join(f"token{i}" for i in range(300)),
    "Makefiles must be indented with tabs, not spaces",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def fastembed_vectors(cache: Path) -> np.ndarray:
    from fastembed import TextEmbedding

    model = TextEmbedding(model_name=DEFAULT_MODEL, specific_model_path=str(default_model_dir(cache)),
                          cache_dir=str(cache / "fastembed"))
    return np.array(list(model.embed(TEXTS)))


def test_vectors_match_fastembed(cache: Path, fastembed_vectors: np.ndarray) -> None:
    emb = Embedder(DEFAULT_MODEL, cache)
    batched = np.array(emb.embed(TEXTS))
    one_by_one = np.array([emb.embed_one(t) for t in TEXTS])
    reversed_batch = np.array(emb.embed(TEXTS[::-1]))[::-1]
    for got in (batched, one_by_one, reversed_batch):
        assert got.shape == fastembed_vectors.shape
        cos = (got * fastembed_vectors).sum(1)
        assert cos.min() >= 0.99999, cos


def test_long_batches_are_split_by_tokens_and_keep_order(cache: Path) -> None:
    emb = Embedder(DEFAULT_MODEL, cache, batch_size=64)
    texts = [("long " * (50 + i * 7)) + str(i) for i in range(40)] + [f"short {i}" for i in range(40)]
    assert 40 * 256 > MAX_BATCH_TOKENS  # the first texts cannot go in one batch
    got = np.array(emb.embed(texts))
    single = np.array([emb.embed_one(t) for t in (texts[0], texts[39], texts[40], texts[79])])
    assert np.allclose(got[[0, 39, 40, 79]], single, atol=1e-5)


def test_concurrent_embeds_agree(cache: Path) -> None:
    emb = Embedder(DEFAULT_MODEL, cache)
    texts = [f"thread text {i} " * (1 + i % 5) for i in range(24)]
    expected = np.array(emb.embed(texts))
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = np.array([emb.embed_one(t) for t in texts[k::4]])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for k in range(4):
        assert np.allclose(results[k], expected[k::4], atol=1e-5)


def _own_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty per-user model cache for this test (the run's shared one is left alone)."""
    monkeypatch.delenv("CLARITY_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "clarity"


def test_optimised_copy_is_built_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = _own_user_cache(tmp_path, monkeypatch)
    store_cache = tmp_path / "home" / "cache"
    emb = Embedder(DEFAULT_MODEL, store_cache)
    first = np.array(emb.embed(["hello"]))
    (opt,) = [p for p in models.iterdir() if "-ort" in p.name]
    assert {p.name for p in opt.iterdir()} == {"model.onnx", "model.onnx.data", "probe.json"}
    stamp = (opt / "model.onnx.data").stat().st_mtime_ns
    again = np.array(Embedder(DEFAULT_MODEL, tmp_path / "other-home" / "cache").embed(["hello"]))
    assert (opt / "model.onnx.data").stat().st_mtime_ns == stamp  # another project reuses the user's copy
    assert np.allclose(first, again, atol=1e-6)
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no temp folder left
    assert not store_cache.exists() and not (tmp_path / "other-home").exists()  # nothing in the projects


@pytest.mark.parametrize("damage", ["truncate-data", "wrong-probe", "garbage-graph"])
def test_a_damaged_optimised_copy_is_rebuilt(tmp_path: Path, fastembed_vectors: np.ndarray, damage: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    models = _own_user_cache(tmp_path, monkeypatch)
    Embedder(DEFAULT_MODEL, tmp_path).embed(["build it"])
    (opt,) = [p for p in models.iterdir() if "-ort" in p.name]
    if damage == "truncate-data":
        with (opt / "model.onnx.data").open("r+b") as f:
            f.truncate(1000)
    elif damage == "wrong-probe":
        (opt / "probe.json").write_text(json.dumps([0.0] * 383 + [1.0]))
    else:
        (opt / "model.onnx").write_bytes(b"not a model")
    got = np.array(Embedder(DEFAULT_MODEL, tmp_path).embed(TEXTS))
    assert (got * fastembed_vectors).sum(1).min() >= 0.99999
    assert json.loads((opt / "probe.json").read_text()) != [0.0] * 383 + [1.0]
    assert (opt / "model.onnx.data").stat().st_size > 50_000_000
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # the damaged copy was removed whole


PROBE = """
import sys
from pathlib import Path
import clarity.encoders.dense
assert "onnxruntime" not in sys.modules and "fastembed" not in sys.modules, "imported at module import"
from clarity.config import DEFAULT_MODEL
import os
from tests.harness.processes import rss_kib
def rss():
    return rss_kib(os.getpid()) / 1024
import numpy, onnxruntime, tokenizers  # the runtime itself is not the model's cost
before = rss()
e = clarity.encoders.dense.Embedder(DEFAULT_MODEL, Path(sys.argv[1]))
e.embed_one("warm up")
print(rss() - before)
"""


def test_import_is_light_and_a_loaded_model_costs_under_100_mib(tmp_path: Path) -> None:
    """fastembed's load cost about 165 MiB of RSS here; the optimised copy with mapped weights ~75."""
    for _ in range(2):  # the first run builds the home's optimised copy, the second loads it
        proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
    added = float(proc.stdout.strip().splitlines()[-1])
    assert added < 100, f"a model load added {added:.0f} MiB"
