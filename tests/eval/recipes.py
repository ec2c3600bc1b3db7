"""Which fields to index with a memory's content (`clarity.memory.indexed_text`), measured: the project's
evaluation set and LoCoMo (`tests.eval.locomo`), each run through the real service (real engine, real
model) once per pair of recipes (dense, sparse), on fresh homes.

The recipes are the module's `DENSE` and `SPARSE`, set for the run (`use`) and put back after: the
service's every write path reads them, so a variant is indexed exactly as the service would index it.
One embedder (`CachingEmbedder`: the real model, each distinct text embedded once) serves every
variant, so a variant costs only the texts it changes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clarity.config import load_settings
from clarity.encoders.dense import Embedder
from clarity.memory import indexed_text
from clarity.memory.indexed_text import Recipe
from clarity.memory.service import build_service
from tests.eval import evaluate as ev
from tests.eval import locomo
from tests.eval.data import Memory, Question

C = indexed_text.CONTENT_ONLY
VARIANTS: dict[str, tuple[Recipe, Recipe]] = {  # name: "dense fields | sparse fields", each with the content
    "content | content (before)": (C, C),
    "content | date": (C, Recipe(date=True)),
    "context | date": (Recipe(context=True), Recipe(date=True)),
    "date+context | date": (Recipe(date=True, context=True), Recipe(date=True)),
    "date | date": (Recipe(date=True), Recipe(date=True)),
    "context | date+context": (Recipe(context=True), Recipe(date=True, context=True)),
    "context | date+tags": (Recipe(context=True), Recipe(date=True, tags=True)),
    "context+type+tags | date+type+tags": (Recipe(context=True, memory_type=True, tags=True),
                                           Recipe(date=True, memory_type=True, tags=True)),
}


class CachingEmbedder(Embedder):
    """The real embedder; a text already embedded in this process is answered from memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache: dict[str, list[float]] = {}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for start in range(0, len(todo), 256):
            part = todo[start:start + 256]
            self.cache.update(zip(part, super().embed(part), strict=True))
        return [self.cache[t] for t in texts]


@contextmanager
def use(dense: Recipe, sparse: Recipe) -> Iterator[None]:
    saved = indexed_text.DENSE, indexed_text.SPARSE
    indexed_text.DENSE, indexed_text.SPARSE = dense, sparse
    try:
        yield
    finally:
        indexed_text.DENSE, indexed_text.SPARSE = saved


def embedder_for(home: Path) -> CachingEmbedder:
    """The configured model at the configured precision (CLARITY_MODEL_PRECISION), caching."""
    s = load_settings(home)
    return CachingEmbedder(s.embedding.model, s.cache_dir, s.embedding.batch_size, precision=s.embedding.precision)


def project_eval(embedder: Embedder, memories: Sequence[Memory], questions: Sequence[Question],
                 mode: str | None = "hybrid") -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="clarity-recipe-") as tmp:
        service = build_service(load_settings(Path(tmp) / "home"), embedder=embedder)
        try:
            by_uuid = ev.load_into(service, memories)
            return ev.score(questions, ev.dense_rankings(service, questions, by_uuid, mode))
        finally:
            service.close()


def locomo_eval(embedder: Embedder, conversations: Sequence[locomo.Conversation]) -> dict[str, dict[str, float]]:
    rows: list[tuple[int, float, float]] = []
    for conv in conversations:
        with tempfile.TemporaryDirectory(prefix="clarity-locomo-") as tmp:
            service = build_service(load_settings(Path(tmp) / "home"), embedder=embedder)
            try:
                rows += locomo.evaluate(service, conv)
            finally:
                service.close()
    return locomo.summarize(rows)


def recipe_report(memories: Sequence[Memory], questions: Sequence[Question], locomo_path: Path | None,
                  variants: dict[str, tuple[Recipe, Recipe]] = VARIANTS, log: Any = None) -> dict[str, Any]:
    """Per variant: the project evaluation's figures (hybrid retrieve) and LoCoMo's (when its path is
    given), with the seconds each took."""
    with tempfile.TemporaryDirectory(prefix="clarity-recipe-model-") as tmp:
        embedder = embedder_for(Path(tmp) / "home")
    convs = locomo.load(locomo_path) if locomo_path else []
    out: dict[str, Any] = {"_model": {"name": embedder.model_name, "precision": embedder.requested_precision}}
    for name, (dense, sparse) in variants.items():
        t0 = time.perf_counter()
        with use(dense, sparse):
            row: dict[str, Any] = {"dense": dense.__dict__, "sparse": sparse.__dict__,
                                   "project": project_eval(embedder, memories, questions)}
            if convs:
                row["locomo"] = locomo_eval(embedder, convs)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = row
        if log is not None:
            log(name, row)
    return out
