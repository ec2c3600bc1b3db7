"""The default model on onnxruntime directly: fastembed's vectors (float), int8 ones close to them, a cheap
load, a self-healing cache of both copies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from clarity.config import DEFAULT_MODEL
from clarity.encoders import onnx_model
from clarity.encoders.dense import Embedder, default_model_dir
from clarity.encoders.onnx_model import MAX_BATCH_TOKENS, SOLO_TOKENS, buckets

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
    emb = Embedder(DEFAULT_MODEL, cache, precision="float")
    batched = np.array(emb.embed(TEXTS))
    one_by_one = np.array([emb.embed_one(t) for t in TEXTS])
    reversed_batch = np.array(emb.embed(TEXTS[::-1]))[::-1]
    for got in (batched, one_by_one, reversed_batch):
        assert got.shape == fastembed_vectors.shape
        cos = (got * fastembed_vectors).sum(1)
        assert cos.min() >= 0.99999, cos


def test_int8_vectors_are_close_to_fastembed(cache: Path, fastembed_vectors: np.ndarray) -> None:
    emb = Embedder(DEFAULT_MODEL, cache)  # the default precision
    assert emb.requested_precision == "int8"
    one_by_one = np.array([emb.embed_one(t) for t in TEXTS])
    assert emb.precision == "int8"
    cos = (one_by_one * fastembed_vectors).sum(1)
    assert cos.mean() >= 0.985 and cos.min() >= 0.96, cos
    assert np.allclose(np.linalg.norm(one_by_one, axis=1), 1, atol=1e-4)
    batched = np.array(emb.embed(TEXTS))  # activations are quantised per batch: close, not equal
    assert (batched * one_by_one).sum(1).min() >= 0.97
    again = np.array([Embedder(DEFAULT_MODEL, cache).embed([t])[0] for t in TEXTS])
    assert np.allclose(again, one_by_one, atol=1e-6)  # a lone text's vector is reproducible


def test_buckets_cut_by_length_tokens_and_count() -> None:
    assert buckets([], 32) == []
    assert buckets([10, 9, 8, 7, 6], 32) == [(0, 3), (3, 5)]  # 7 < 0.8 * 10; 6 >= 0.8 * 7
    assert buckets([10] * 5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert buckets([30] * 70, 64) == [(0, 64), (64, 70)]
    assert buckets([2000 // 8] * 2 + [30] * 100, 200) == [(0, 1), (1, 2), (2, 70), (70, 102)]  # 68 * 30 <= 2048
    assert buckets([100, 5, 5, 4, 1], 32) == [(0, 1), (1, 4), (4, 5)]
    assert buckets([SOLO_TOKENS, SOLO_TOKENS, SOLO_TOKENS - 1, SOLO_TOKENS - 1], 32) == [(0, 1), (1, 2), (2, 4)]


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_long_batches_are_split_by_tokens_and_keep_order(cache: Path, precision: str) -> None:
    emb = Embedder(DEFAULT_MODEL, cache, batch_size=64, precision=precision)  # type: ignore[arg-type]
    texts = [("long " * (50 + i * 7)) + str(i) for i in range(40)] + [f"short {i}" for i in range(40)]
    assert 40 * 256 > MAX_BATCH_TOKENS  # the first texts cannot go in one batch
    got = np.array(emb.embed(texts))
    single = np.array([emb.embed_one(t) for t in (texts[0], texts[39], texts[40], texts[79])])
    if precision == "float":
        assert np.allclose(got[[0, 39, 40, 79]], single, atol=1e-5)
    else:
        assert (got[[0, 39, 40, 79]] * single).sum(1).min() >= 0.97
    shuffled = [texts[(i * 37) % 80] for i in range(80)]  # every text once, in another order
    again = np.array(emb.embed(shuffled))
    assert (again * got[[(i * 37) % 80 for i in range(80)]]).sum(1).min() >= (0.99999 if precision == "float"
                                                                                else 0.97)


def test_concurrent_embeds_agree(cache: Path) -> None:
    texts = [f"thread text {i} " * (1 + i % 5) for i in range(24)]
    expected = np.array([Embedder(DEFAULT_MODEL, cache).embed([t])[0] for t in texts])
    emb = Embedder(DEFAULT_MODEL, cache)
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
    opt, int8 = sorted(p for p in models.iterdir() if "-ort" in p.name)  # the float copy and the int8 one
    assert int8.name == opt.name + "-int8"
    for copy in (opt, int8):
        assert {p.name for p in copy.iterdir()} == {"model.onnx", "model.onnx.data", "probe.json"}
    assert (int8 / "model.onnx.data").stat().st_size < 0.7 * (opt / "model.onnx.data").stat().st_size
    stamps = [(c / "model.onnx.data").stat().st_mtime_ns for c in (opt, int8)]
    again = np.array(Embedder(DEFAULT_MODEL, tmp_path / "other-home" / "cache").embed(["hello"]))
    float_too = Embedder(DEFAULT_MODEL, tmp_path / "third-home" / "cache", precision="float")
    assert float_too.embed(["hello"]) and float_too.precision == "float"
    # other projects reuse the user's copies
    assert [(c / "model.onnx.data").stat().st_mtime_ns for c in (opt, int8)] == stamps
    assert np.allclose(first, again, atol=1e-6)
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no temp folder left
    assert not store_cache.exists() and not (tmp_path / "other-home").exists()  # nothing in the projects


@pytest.mark.parametrize("precision", ["float", "int8"])
@pytest.mark.parametrize("damage", ["truncate-data", "wrong-probe", "garbage-graph"])
def test_a_damaged_optimised_copy_is_rebuilt(tmp_path: Path, fastembed_vectors: np.ndarray, damage: str,
                                             precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    models = _own_user_cache(tmp_path, monkeypatch)
    Embedder(DEFAULT_MODEL, tmp_path, precision=precision).embed(["build it"])  # type: ignore[arg-type]
    (opt,) = [p for p in models.iterdir() if "-ort" in p.name and p.name.endswith("-int8") == (precision == "int8")]
    if damage == "truncate-data":
        with (opt / "model.onnx.data").open("r+b") as f:
            f.truncate(1000)
    elif damage == "wrong-probe":
        (opt / "probe.json").write_text(json.dumps([0.0] * 383 + [1.0]))
    else:
        (opt / "model.onnx").write_bytes(b"not a model")
    emb = Embedder(DEFAULT_MODEL, tmp_path, precision=precision)  # type: ignore[arg-type]
    got = np.array(emb.embed(TEXTS))
    assert emb.precision == precision
    assert (got * fastembed_vectors).sum(1).min() >= (0.99999 if precision == "float" else 0.96)
    assert json.loads((opt / "probe.json").read_text()) != [0.0] * 383 + [1.0]
    assert (opt / "model.onnx.data").stat().st_size > 50_000_000
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # the damaged copy was removed whole


def test_an_int8_copy_that_strays_from_float_is_not_kept(tmp_path: Path, fastembed_vectors: np.ndarray,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The build checks the quantised probe against the float one; failing that, float runs (a warning)."""
    models = _own_user_cache(tmp_path, monkeypatch)
    monkeypatch.setattr(onnx_model, "INT8_MIN_COSINE", 1.000001)  # no quantised vector can pass
    emb = Embedder(DEFAULT_MODEL, tmp_path)
    with caplog.at_level("WARNING"):
        got = np.array(emb.embed(TEXTS))
    assert emb.precision == "float"
    assert "using the float model: the int8 copy" in caplog.text
    assert (got * fastembed_vectors).sum(1).min() >= 0.99999
    assert [p.name for p in models.iterdir() if "-ort" in p.name and p.name.endswith("-int8")] == []
    assert not [p for p in models.iterdir() if p.name.startswith(".")]


def test_two_threads_only_for_a_larger_batch(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_model, "_threads", lambda: 2)  # as on any machine of two cores or more
    emb = Embedder(DEFAULT_MODEL, cache)
    lone = emb.embed(["a lone text"])
    enc = emb._model
    assert enc._batch_session is None  # a lone text runs on the one-thread session
    emb.embed(["a small batch", "of three", "texts"])  # as concurrent stores batch: one thread still
    assert enc._batch_session is None
    emb.embed([f"text number {i} of one length" for i in range(onnx_model.BATCH_MIN_TEXTS)])  # one bucket
    assert enc._batch_session is not None and enc._batch_session is not enc._session
    assert np.allclose(emb.embed(["a lone text"]), lone, atol=1e-6)  # back on the one-thread session


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
