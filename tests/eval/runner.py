"""One evaluation run: a fresh home, the real service, every method, one report (a JSON-able dict).

`run_evaluation(home, ...)` builds the service with `build_service(load_settings(home))` in this
process (the configured engine and the configured embedding model, offline), imports the memories,
evaluates every supported `mode` of `retrieve` plus the BM25 baseline, measures the near-duplicate
pairs, and closes the service. `home` must be a fresh folder: the report is only meaningful for a
store holding exactly the evaluation memories.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clarity.config import load_settings
from clarity.memory.service import build_service
from tests.eval import evaluate as ev
from tests.eval.data import Memory, Pair, Question

WANTED_MODES = ("hybrid", "semantic", "keyword")


def run_evaluation(home: Path, memories: Sequence[Memory], questions: Sequence[Question],
                   pairs: Sequence[Pair], modes: Sequence[str] = WANTED_MODES,
                   variants: bool = False) -> dict[str, Any]:
    if home.exists() and any(home.iterdir()):
        raise ValueError(f"{home} is not empty: the evaluation needs a fresh home")
    settings = load_settings(home)
    service = build_service(settings)
    report: dict[str, Any] = {"model": settings.embedding.model, "memories": len(memories),
                              "questions": {c: sum(q.category == c for q in questions)
                                            for c in sorted({q.category for q in questions})},
                              "methods": {}, "timings_s": {}}
    try:
        t0 = time.perf_counter()
        by_uuid = ev.load_into(service, memories)
        report["timings_s"]["import"] = round(time.perf_counter() - t0, 2)
        report["engine"] = service.execute("stats", {})["engine"]
        found = ev.supported_modes(service, modes)
        report["modes_supported"] = [m for m in found if m is not None]
        per_question: dict[str, dict[str, int | None]] = {q.id: {} for q in questions}
        rankings: dict[str, ev.Rankings] = {}
        for mode in found:
            name = f"clarity:{mode or 'semantic'}"
            t0 = time.perf_counter()
            rankings[name] = ev.dense_rankings(service, questions, by_uuid, mode)
            report["timings_s"][name] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        rankings["bm25"] = ev.bm25_rankings(memories, questions)
        report["timings_s"]["bm25"] = round(time.perf_counter() - t0, 2)
        for name, ranks in rankings.items():
            report["methods"][name] = ev.score(questions, ranks)
            for q in questions:
                per_question[q.id][name] = ev.first_rank(q, ranks)
        if variants and "hybrid" in report["modes_supported"]:
            t0 = time.perf_counter()
            report["variants"] = ev.variant_report(service, questions, by_uuid)
            report["timings_s"]["variants"] = round(time.perf_counter() - t0, 2)
        report["near_duplicates"] = ev.near_duplicate_report(service, pairs) if pairs else None
        report["per_question"] = per_question
    finally:
        service.close()
    return report
