"""A BERT sentence encoder run straight on onnxruntime: tokenise, run, mean-pool, L2-normalise.

Used by `clarity.encoders.dense.Embedder` for the default model (all-MiniLM-L6-v2) instead of fastembed,
for memory. The shipped model stores its weights as int8 and turns them into float32 in the graph;
onnxruntime's constant folding does that at every load, in memory, which cost about 160 MiB of RSS
per process. Here the folding runs once per user and onnxruntime version: the optimised graph is
saved in the user's model cache (`clarity.encoders.dense.models_dir`) as `<model>-ort<version>/`, with
its float32 weights in an external data file, which later loads memory-map (the 47 MB word-embedding
table is then read only where tokens hit it). Every project and session of the user shares it.

Guarantees:
- The same vectors as fastembed gives for the model (same tokenizer settings: truncation at
  `model_max_length`, padding to the longest text of a batch; mean pooling over the attention mask
  in float64; L2 normalisation): cosine >= 0.99999, checked by tests.
- The optimised folder is written in a temporary folder and renamed into place, with a probe vector
  computed from the original model; a load whose probe disagrees (or fails) rebuilds it once, then
  falls back to the original model in memory (correct, only heavier) with a warning. A damaged copy
  is renamed away before it is removed, so no process ever loads a half-removed folder.
- Processes starting at once on an empty cache build it once: the builder holds `optimise.lock` in the
  cache, the others wait for it (at most `BUILD_WAIT_S`, then build their own copy, of which the first
  rename wins) and load the copy it made. Either way the cache ends with one complete copy.
- `encode` is thread-safe (onnxruntime sessions and the tokenizer allow concurrent calls).
- Batches hold at most `MAX_BATCH_TOKENS` padded tokens (texts sorted by length first), so a batch of
  long texts never needs hundreds of MiB of activations; the vectors do not depend on the batching.
Not guaranteed: bit-identical floats across batch compositions (differences are ~1e-7).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clarity.errors import ClarityError
from clarity.platform.locks import FileLock
from clarity.platform.memory import release_free_memory

log = logging.getLogger(__name__)

MAX_BATCH_TOKENS = 2048
PROBE_TEXT = "Clarity probe: the owner holds the lease and serves every session. Ünïcødé ✓"
PROBE_MIN_COSINE = 0.99999
_TRIM_AFTER_TOKENS = 1024  # a batch this large leaves freed activations worth giving back to the OS
BUILD_WAIT_S = 180.0  # how long a process waits for another's build before it builds its own copy
BUILD_LOCK = "optimise.lock"


def _threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _session_options(ort: Any) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = _threads()
    so.inter_op_num_threads = 1
    # spinning threads burn CPU the other sessions' requests need; measured: same wall time, less CPU
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_cpu_mem_arena = False
    return so


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    summed = np.sum(hidden, axis=1, where=mask[:, :, np.newaxis].astype(bool), dtype=np.float64)
    pooled = summed / np.maximum(np.sum(mask, axis=1, keepdims=True), 1e-9)
    norm = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = (pooled / norm).astype(np.float32)
    return out


class OnnxSentenceEncoder:
    """Loads `model_dir` (model.onnx + tokenizer files) through an optimised copy in `cache_models`."""

    def __init__(self, model_dir: Path, cache_models: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._ort = ort
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
        self.max_length = int(config.get("model_max_length", 256))
        pad_token = config.get("pad_token", "[PAD]")
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_length)
        tok.no_padding()  # padding per batch, below
        self._pad_id = tok.token_to_id(pad_token)
        if self._pad_id is None:
            raise ValueError(f"pad token {pad_token!r} is not in {model_dir / 'tokenizer.json'}")
        self._tok = tok
        self.optimised_dir = cache_models / f"{model_dir.name}-ort{ort.__version__}"
        self._session = self._open(model_dir)
        release_free_memory()

    # -- loading ---------------------------------------------------------------------------------

    def _open(self, model_dir: Path) -> Any:
        for attempt in (1, 2):
            try:
                if not (self.optimised_dir / "probe.json").exists():
                    self._build_once(model_dir)
                session = self._ort.InferenceSession(str(self.optimised_dir / "model.onnx"),
                                                     _session_options(self._ort),
                                                     providers=["CPUExecutionProvider"])
                expected = np.asarray(json.loads((self.optimised_dir / "probe.json").read_text()),
                                      dtype=np.float32)
                got = self._run(session, [PROBE_TEXT])[0]
                if float(got @ expected) >= PROBE_MIN_COSINE:
                    return session
                log.warning("optimised model in %s disagrees with the original (cosine %.6f)",
                            self.optimised_dir, float(got @ expected))
            except Exception as e:  # noqa: BLE001 - a damaged cache must never stop embedding
                log.warning("optimised model in %s unusable (attempt %d): %s", self.optimised_dir, attempt, e)
            self._discard(self.optimised_dir)
        log.warning("using the original model %s in memory (heavier)", model_dir)
        so = _session_options(self._ort)
        return self._ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])

    @staticmethod
    def _discard(folder: Path) -> None:
        """Remove a damaged copy: renamed away first (atomic), so nobody loads it half-removed."""
        doomed = folder.with_name(f".{folder.name}.discard.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        try:
            folder.rename(doomed)
        except OSError:  # already gone (another process discarded it)
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def _build_once(self, model_dir: Path) -> None:
        """Build the optimised copy unless another process is doing it: then wait for that one (see the
        module docstring). A lock that cannot be had (another user's cache) builds without it."""
        self.optimised_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.optimised_dir.parent / BUILD_LOCK)
        try:
            got = lock.acquire(exclusive=True, deadline=time.monotonic() + BUILD_WAIT_S)
            if not got:
                log.warning("no build of %s finished within %.0f s: building one here", self.optimised_dir,
                            BUILD_WAIT_S)
        except (OSError, ClarityError) as e:
            log.warning("building the optimised model without the lock %s: %s", lock.path, e)
            got = False
        try:
            if got and (self.optimised_dir / "probe.json").exists():
                return  # built by the process we waited for
            self._build(model_dir)
        finally:
            lock.close()

    def _build(self, model_dir: Path) -> None:
        """Fold the original graph once and save it with external float32 weights, atomically."""
        target = self.optimised_dir
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        tmp.mkdir()
        log.info("building the optimised embedding model in %s", tmp)
        try:
            so = _session_options(self._ort)
            # EXTENDED: every fusion of the CPU provider, but no layout change tied to this CPU
            so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = str(tmp / "model.onnx")
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.onnx.data")
            so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
            build = self._ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
            probe = self._run(build, [PROBE_TEXT])[0]
            del build
            (tmp / "probe.json").write_text(json.dumps([float(x) for x in probe]))
            try:
                tmp.rename(target)
                log.info("saved the optimised embedding model in %s", target)
            except OSError:  # another process made it first
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            gc.collect()
            release_free_memory()

    # -- encoding --------------------------------------------------------------------------------

    def _run(self, session: Any, texts: Sequence[str]) -> np.ndarray:
        return self._forward(session, self._tok.encode_batch(list(texts)))

    def _forward(self, session: Any, encs: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, e in enumerate(encs):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = e.attention_mask
        feeds = {"input_ids": ids, "attention_mask": mask}
        if any(i.name == "token_type_ids" for i in session.get_inputs()):
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        return _pooled(hidden, mask)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit vectors (float32, one row per text, in order). Batches of at most `batch_size` texts and
        `MAX_BATCH_TOKENS` padded tokens, texts grouped by length."""
        encs = self._tok.encode_batch(list(texts))
        order = sorted(range(len(encs)), key=lambda i: -len(encs[i].ids))
        out = np.empty((len(encs), 0), dtype=np.float32)
        start = 0
        big = False
        while start < len(order):
            width = len(encs[order[start]].ids)  # the longest of this batch: sorted descending
            n = max(1, min(batch_size, MAX_BATCH_TOKENS // max(width, 1), len(order) - start))
            idx = order[start: start + n]
            vecs = self._forward(self._session, [encs[i] for i in idx])
            if out.shape[1] == 0:
                out = np.empty((len(encs), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
            big = big or n * width >= _TRIM_AFTER_TOKENS
            start += n
        if big:
            release_free_memory()
        return out
