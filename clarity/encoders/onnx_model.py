"""A BERT sentence encoder run straight on onnxruntime: tokenise, run, mean-pool, L2-normalise.

Used by `clarity.encoders.dense.Embedder` for the default model (all-MiniLM-L6-v2) instead of fastembed,
for memory. The shipped model stores its weights as int8 and turns them into float32 in the graph;
onnxruntime's constant folding does that at every load, in memory, which cost about 160 MiB of RSS
per process. Here the folding runs once per user and onnxruntime version: the optimised graph is
saved in the user's model cache (`clarity.encoders.dense.models_dir`) as `<model>-ort<version>/`, with
its float32 weights in an external data file, which later loads memory-map (the 47 MB word-embedding
table is then read only where tokens hit it). Every project and session of the user shares it.

Precision `int8` (the default) runs a second copy made once from that float copy, `<model>-ort<version>-int8/`:
onnxruntime's dynamic quantisation of the MatMuls (signed int8 weights, one scale per output channel;
activations quantised per call), about half the CPU per text; its vectors are within cosine ~0.99 of the
float ones, so vectors stored by either precision are searched by the other (docs/bench/int8.md).
Building it needs the `onnx` package and about 2 s; `float` runs the float copy.

Guarantees:
- `float`: the same vectors as fastembed gives for the model (same tokenizer settings: truncation at
  `model_max_length`, padding to the longest text of a batch; mean pooling over the attention mask
  in float64; L2 normalisation): cosine >= 0.99999, checked by tests. `int8`: cosine >= `INT8_MIN_COSINE`
  to the float vector of the probe text, checked when the copy is built (else it is not kept).
- Each copy is written in a temporary folder and renamed into place, with a probe vector; a load whose
  probe disagrees (or fails) rebuilds it once, then falls back (int8 -> float -> the original model in
  memory: correct, only heavier or slower) with a warning. A damaged copy is renamed away before it is
  removed, so no process ever loads a half-removed folder.
- Processes starting at once on an empty cache build each copy once: the builder holds `optimise.lock` in
  the cache, the others wait for it (at most `BUILD_WAIT_S`, then build their own copy, of which the first
  rename wins) and load the copy it made. Either way the cache ends with one complete copy of each.
- A lone text, or a model run of fewer than `BATCH_MIN_TEXTS` texts (what concurrent stores batch), runs
  on one intra-op thread: the other core serves other sessions (measured: two threads cost 4-100% more CPU
  per text; with 8 sessions storing, one thread gave the owner 13% less CPU per store). A larger run (an
  import, a re-embed) uses a second session of the same copy with `_threads()` threads, made on first use.
- `encode` is thread-safe (onnxruntime sessions and the tokenizer allow concurrent calls).
- Batches are cut by length: texts sorted longest first; a text of `SOLO_TOKENS` tokens or more runs
  alone (batched, long texts cost more CPU per text: measured in docs/bench/embed_cost.md); shorter ones
  are batched, a batch ending where a text is shorter than `BUCKET_RATIO` of its longest, so padding costs
  at most a quarter more (for short texts a batch costs about half the CPU per text of single runs).
Not guaranteed: bit-identical floats across batch compositions (differences are ~1e-7 float, ~1e-3 int8:
activations are quantised per batch).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clarity.errors import ClarityError
from clarity.platform.locks import FileLock
from clarity.platform.memory import release_free_memory

log = logging.getLogger(__name__)

MAX_BATCH_TOKENS = 2048
BATCH_THREADS = 2  # intra-op threads for a model run of at least BATCH_MIN_TEXTS texts
BATCH_MIN_TEXTS = 4  # smaller runs (a lone text, the 2-3 texts of concurrent stores) use one thread
BUCKET_RATIO = 0.8  # a batch ends before a text shorter than this share of the batch's longest
SOLO_TOKENS = 40  # a text this long runs alone: batching long texts costs more CPU per text, not less
INT8_MIN_COSINE = 0.98  # the int8 copy's probe vector against the float copy's, or the int8 copy is not kept
INT8_PROBE_MIN_COSINE = 0.9999  # a loaded int8 copy against its own probe (int8 kernels differ across CPUs)
PROBE_TEXT = "Clarity probe: the owner holds the lease and serves every session. Ünïcødé ✓"
PROBE_MIN_COSINE = 0.99999
_TRIM_AFTER_TOKENS = 1024  # a batch this large leaves freed activations worth giving back to the OS
BUILD_WAIT_S = 180.0  # how long a process waits for another's build before it builds its own copy
BUILD_LOCK = "optimise.lock"


def _threads() -> int:
    """Intra-op threads of the batch session."""
    return max(1, min(BATCH_THREADS, os.cpu_count() or 1))


Precision = Literal["int8", "float"]


def _quantiser_advice(record: logging.LogRecord) -> bool:
    """A root-logger filter: drop the quantiser's warnings while Clarity builds its int8 copy."""
    return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def _session_options(ort: Any, threads: int = 1) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
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
    """Loads `model_dir` (model.onnx + tokenizer files) through an optimised copy in `cache_models`, the
    int8 one for `precision="int8"` (`precision` then tells what runs: "float" after a fallback)."""

    def __init__(self, model_dir: Path, cache_models: Path, precision: Precision = "int8") -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if precision not in ("int8", "float"):
            raise ValueError(f"precision must be int8 or float, not {precision!r}")
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
        self.quantised_dir = cache_models / f"{model_dir.name}-ort{ort.__version__}-int8"
        self.precision: Precision = precision
        self._batch_session: Any = None
        self._batch_lock = threading.Lock()
        self._model_path, self._session = self._open(model_dir)
        release_free_memory()

    # -- loading ---------------------------------------------------------------------------------

    def _new_session(self, path: Path, threads: int = 1) -> Any:
        return self._ort.InferenceSession(str(path), _session_options(self._ort, threads),
                                          providers=["CPUExecutionProvider"])

    def _open(self, model_dir: Path) -> tuple[Path, Any]:
        float_copy: tuple[Path, Any] | None = None
        if self.precision == "int8":
            opened = self._open_copy(self.quantised_dir, INT8_PROBE_MIN_COSINE, None)  # made already?
            if opened is not None:
                return opened
            # not yet (or damaged, now discarded): its source first, never under the build lock
            float_copy = self._open_copy(self.optimised_dir, PROBE_MIN_COSINE,
                                         lambda tmp: self._build_float(model_dir, tmp))
            reference = None if float_copy is None else self._run(float_copy[1], [PROBE_TEXT])[0]
            opened = self._open_copy(self.quantised_dir, INT8_PROBE_MIN_COSINE,
                                     lambda tmp: self._build_int8(reference, tmp))
            if opened is not None:
                return opened
            log.warning("using the float model: the int8 copy %s is unusable", self.quantised_dir)
            self.precision = "float"
        opened = float_copy or self._open_copy(self.optimised_dir, PROBE_MIN_COSINE,
                                               lambda tmp: self._build_float(model_dir, tmp))
        if opened is not None:
            return opened
        log.warning("using the original model %s in memory (heavier)", model_dir)
        return model_dir / "model.onnx", self._new_session(model_dir / "model.onnx")

    def _open_copy(self, folder: Path, min_cosine: float,
                   build: Callable[[Path], None] | None) -> tuple[Path, Any] | None:
        """A session on the copy in `folder` (built by `build(tmp)` when missing) whose probe vector
        agrees with the one saved at build time; None after two failed attempts, or when the copy is
        missing and `build` is None."""
        for attempt in (1, 2):
            try:
                if not (folder / "probe.json").exists():
                    if build is None:
                        return None
                    self._build_once(folder, build)
                session = self._new_session(folder / "model.onnx")
                expected = np.asarray(json.loads((folder / "probe.json").read_text()), dtype=np.float32)
                got = self._run(session, [PROBE_TEXT])[0]
                if float(got @ expected) >= min_cosine:
                    return folder / "model.onnx", session
                log.warning("model copy in %s disagrees with its probe (cosine %.6f)", folder, float(got @ expected))
            except Exception as e:  # noqa: BLE001 - a damaged cache must never stop embedding
                log.warning("model copy in %s unusable (attempt %d): %s", folder, attempt, e)
            self._discard(folder)
        return None

    @staticmethod
    def _discard(folder: Path) -> None:
        """Remove a damaged copy: renamed away first (atomic), so nobody loads it half-removed."""
        doomed = folder.with_name(f".{folder.name}.discard.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        try:
            folder.rename(doomed)
        except OSError:  # already gone (another process discarded it)
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def _build_once(self, target: Path, build: Callable[[Path], None]) -> None:
        """Build the copy `target` unless another process is doing it: then wait for that one (see the
        module docstring). A lock that cannot be had (another user's cache) builds without it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(target.parent / BUILD_LOCK)
        try:
            got = lock.acquire(exclusive=True, deadline=time.monotonic() + BUILD_WAIT_S)
            if not got:
                log.warning("no build of %s finished within %.0f s: building one here", target, BUILD_WAIT_S)
        except (OSError, ClarityError) as e:
            log.warning("building the model copy without the lock %s: %s", lock.path, e)
            got = False
        try:
            if got and (target / "probe.json").exists():
                return  # built by the process we waited for
            self._build_into(target, build)
        finally:
            lock.close()

    @staticmethod
    def _build_into(target: Path, build: Callable[[Path], None]) -> None:
        """Run `build` in a temporary folder beside `target`, then rename it into place (first rename wins)."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        tmp.mkdir()
        try:
            build(tmp)
            try:
                tmp.rename(target)
                log.info("saved the %s embedding model in %s", "int8" if target.name.endswith("-int8")
                         else "optimised", target)
            except OSError:  # another process made it first
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            gc.collect()
            release_free_memory()

    def _save_optimised(self, source: Path, tmp: Path) -> np.ndarray:
        """Save `source` optimised into `tmp/model.onnx` with external weights; the probe vector of it."""
        so = _session_options(self._ort)
        # EXTENDED: every fusion of the CPU provider, but no layout change tied to this CPU
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp / "model.onnx")
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.onnx.data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        build = self._ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
        probe: np.ndarray = self._run(build, [PROBE_TEXT])[0]
        return probe

    def _build_float(self, model_dir: Path, tmp: Path) -> None:
        """Fold the original graph once and save it with external float32 weights."""
        log.info("building the optimised embedding model in %s", tmp)
        probe = self._save_optimised(model_dir / "model.onnx", tmp)
        (tmp / "probe.json").write_text(json.dumps([float(x) for x in probe]))

    def _build_int8(self, reference: np.ndarray | None, tmp: Path) -> None:
        """Quantise the float copy's MatMuls, optimise, check against `reference` (the float probe vector)."""
        if reference is None or not (self.optimised_dir / "probe.json").exists():
            raise ClarityError(f"no sound float copy in {self.optimised_dir} to quantise")
        from onnxruntime.quantization import QuantType, quantize_dynamic

        log.info("building the int8 embedding model in %s", tmp)
        quantised = tmp / "quantised.onnx"
        root = logging.getLogger()  # the quantiser's advice (pre-processing) goes to the root logger: not for us
        root.addFilter(_quantiser_advice)
        try:
            quantize_dynamic(str(self.optimised_dir / "model.onnx"), str(quantised), per_channel=True,
                             weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        finally:
            root.removeFilter(_quantiser_advice)
        probe = self._save_optimised(quantised, tmp)
        quantised.unlink()
        cosine = float(probe @ reference)
        if cosine < INT8_MIN_COSINE:
            raise ClarityError(f"the int8 model's probe is at cosine {cosine:.4f} of the float one "
                               f"(at least {INT8_MIN_COSINE} expected)")
        (tmp / "probe.json").write_text(json.dumps([float(x) for x in probe]))

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

    def _session_for(self, n: int) -> Any:
        """One thread for a lone text or a small batch; the batch session (made on first use) for more."""
        if n < BATCH_MIN_TEXTS or _threads() == 1:
            return self._session
        with self._batch_lock:
            if self._batch_session is None:
                self._batch_session = self._new_session(self._model_path, _threads())
            return self._batch_session

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit vectors (float32, one row per text, in order). Batches of at most `batch_size` texts and
        `MAX_BATCH_TOKENS` padded tokens, cut by length (see the module docstring)."""
        encs = self._tok.encode_batch(list(texts))
        order = sorted(range(len(encs)), key=lambda i: -len(encs[i].ids))
        out = np.empty((len(encs), 0), dtype=np.float32)
        big = False
        for start, stop in buckets([len(encs[i].ids) for i in order], batch_size):
            idx = order[start:stop]
            vecs = self._forward(self._session_for(len(idx)), [encs[i] for i in idx])
            if out.shape[1] == 0:
                out = np.empty((len(encs), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
            big = big or len(idx) * len(encs[idx[0]].ids) >= _TRIM_AFTER_TOKENS
        if big:
            release_free_memory()
        return out


def buckets(lengths: Sequence[int], batch_size: int) -> list[tuple[int, int]]:
    """Cut `lengths` (sorted longest first) into [start, stop) batches: a text of `SOLO_TOKENS` or more
    alone; shorter ones at most `batch_size` texts and `MAX_BATCH_TOKENS` padded tokens, none shorter than
    `BUCKET_RATIO` of its batch's longest."""
    out: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        width = max(lengths[start], 1)
        stop = start + 1
        while (stop < len(lengths) and width < SOLO_TOKENS and stop - start < batch_size
               and (stop - start + 1) * width <= MAX_BATCH_TOKENS and lengths[stop] >= BUCKET_RATIO * width):
            stop += 1
        out.append((start, stop))
        start = stop
    return out
