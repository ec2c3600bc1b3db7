"""The real model, offline: dims, normalisation, and the default similarity threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clarity.config import DEFAULT_MODEL, Settings
from clarity.encoders.dense import Embedder, default_model_dir

# (memory, a query in other words) — each query must find its memory above the default threshold
RELATED = [
    ("We use PostgreSQL with pgbouncer for connection pooling", "what database and connection pool do we use"),
    ("Makefiles must be indented with tabs, not spaces", "indentation rules for make files"),
    ("The API server listens on port 8080", "which port does the api run on"),
    ("Deployments go out every Tuesday after the standup", "when do we deploy to production"),
    ("Alice prefers pytest over unittest for new tests", "which test framework should new tests use"),
    ("The login page times out after 15 minutes of inactivity", "session expiry for signed in users"),
]
UNRELATED = ["My favourite fruit is a ripe banana", "The weather in Lisbon was sunny all week",
             "She plays the cello in an amateur orchestra"]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    return Embedder(DEFAULT_MODEL, tmp_path_factory.mktemp("cache"))


def test_model_folder_is_assembled_offline(tmp_path: Path) -> None:
    d = default_model_dir(tmp_path)
    assert (d / "model.onnx").exists()
    assert '"model_max_length": 256' in (d / "tokenizer_config.json").read_text()
    assert default_model_dir(tmp_path) == d  # idempotent


def test_a_model_folder_left_by_another_install_is_relinked(tmp_path: Path) -> None:
    """A shared model cache can outlive the virtualenv that made it: its model link then dangles."""
    d = default_model_dir(tmp_path)
    real = (d / "model.onnx").resolve()
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(tmp_path / "gone" / "model.onnx")
    assert not (d / "model.onnx").exists()
    assert default_model_dir(tmp_path) == d
    assert (d / "model.onnx").resolve() == real
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []  # no temporary link left


def test_lazy_load_and_unit_vectors(embedder: Embedder) -> None:
    assert not embedder.loaded
    vecs = embedder.embed(["hello world", "another text", "x"])
    assert embedder.loaded
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in vecs)
    assert embedder.embed([]) == []


@pytest.mark.parametrize("precision", ["float", "int8"])
def test_batches_give_the_same_vectors(tmp_path: Path, precision: str) -> None:
    """Float: the same up to rounding. Int8 quantises a batch's activations together: close, not equal."""
    embedder = Embedder(DEFAULT_MODEL, tmp_path, precision=precision)  # type: ignore[arg-type]
    texts = [f"memory number {i} about topic {i % 7}" for i in range(70)]
    one_by_one = np.array([embedder.embed_one(t) for t in texts[:5]])
    batched = np.array(embedder.embed(texts))[:5]
    if precision == "float":
        assert np.allclose(one_by_one, batched, atol=1e-4)
    else:
        assert (one_by_one * batched).sum(1).min() >= 0.97


def test_recent_queries_are_not_embedded_again(tmp_path: Path) -> None:
    from clarity import timings
    from clarity.encoders.dense import QUERY_CACHE_SIZE

    emb = Embedder(DEFAULT_MODEL, tmp_path)
    timings.reset()
    first = emb.embed_one("which port does the api run on")
    first[0] = 42.0  # the caller's list is its own
    again = emb.embed_one("which port does the api run on")
    assert again != first and again == emb.embed(["which port does the api run on"])[0]
    snap = timings.snapshot()
    assert snap["counters"]["embed_cache_hits"] == 1 and snap["counters"]["embedded_texts"] == 2
    for i in range(QUERY_CACHE_SIZE):  # push the first one out
        emb.embed_one(f"query {i}")
    emb.embed_one("which port does the api run on")
    assert timings.snapshot()["counters"]["embed_cache_hits"] == 1  # evicted: embedded again
    assert emb.embed_one("which port does the api run on?") != again  # the exact text is the key
    other = Embedder(DEFAULT_MODEL, tmp_path, precision="float")
    assert other.embed_one("which port does the api run on") != again  # one cache per model and precision


def test_default_threshold_separates_related_from_unrelated(embedder: Embedder) -> None:
    threshold = Settings().memory.min_similarity
    for memory, query in RELATED:
        m, q = np.array(embedder.embed([memory, query]))
        assert float(m @ q) > threshold, (memory, query, float(m @ q))
        for other in UNRELATED:
            (u,) = np.array(embedder.embed([other]))
            assert float(u @ q) < threshold, (other, query, float(u @ q))
