#!/usr/bin/env python
"""Retrieval evaluation: Clarity's retrieve (each supported mode) and a BM25 baseline on one data set.

The data set is tests/eval/*.jsonl (see tests/eval/README.md). Everything runs in this process: a
fresh temporary home, `build_service(settings)` with the real engine and the real embedding model
(offline), the memories imported under fixed ids, every question asked with limit 5 and
min_similarity -1. `mode` is passed to retrieve only when the service accepts it (probed).

Usage:
  python scripts/eval_retrieval.py                # full set, writes docs/bench/retrieval.{json,md}
  python scripts/eval_retrieval.py --every 5      # every 5th question only (quick look)
  python scripts/eval_retrieval.py --out DIR      # write DIR/retrieval.json and DIR/retrieval.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.eval.data import load_memories, load_pairs, load_questions, validate  # noqa: E402
from tests.eval.runner import run_evaluation  # noqa: E402

MARGIN = 0.05  # suggested near-duplicate threshold: this much above the most similar related pair


def _machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"date": dt.date.today().isoformat(), "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "commit": commit}


def suggest_threshold(nd: dict[str, Any]) -> dict[str, Any]:
    t = round(min(0.99, nd["related"]["max"] + MARGIN), 2)
    caught = sum(1 for p in nd["pairs"] if p["kind"] == "near_duplicate" and p["similarity"] >= t)
    return {"threshold": t, "near_duplicates_caught": caught, "of": nd["near_duplicate"]["n"]}


def render_md(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        "# Retrieval evaluation", "",
        f"Measured {m['date']} on {m['machine']}, {m['cores']} cores, Python {m['python']}, commit "
        f"`{m['commit']}`; one run of `python scripts/eval_retrieval.py{m['args']}` ({m['elapsed_s']:.0f} s). "
        f"Engine `{r['engine']}`, model `{r['model']}`. Data: tests/eval (written for this project): "
        f"{r['memories']} memories of one fictional project, questions per category: "
        + ", ".join(f"{c} {n}" for c, n in r["questions"].items()) + ".",
        "",
        "Every question goes through `retrieve` (limit 5, min_similarity -1). Modes supported by retrieve: "
        + (", ".join(r["modes_supported"]) or "none (no `mode` argument: its dense search is shown as "
                                                "`clarity:semantic`)")
        + ". `bm25` is the baseline computed outside the engine (tests/eval/bm25.py). hit@1: the first "
        "result answers; recall@5: answers found in the top 5 / min(answers, 5); hit@5: any answer in the "
        "top 5; mrr@5: mean reciprocal rank of the first answer.", "",
        "| method | category | n | hit@1 | recall@5 | hit@5 | mrr@5 |", "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, cats in r["methods"].items():
        for cat, f in cats.items():
            lines.append(f"| {name} | {cat} | {f['n']} | {f['hit@1']:.3f} | {f['recall@5']:.3f} | "
                         f"{f['hit@5']:.3f} | {f['mrr@5']:.3f} |")
    var = r.get("variants")
    if var:
        lines += [
            "", "## Hybrid choices (fusion, RRF k, tokenizer, min_similarity)", "",
            "`clarity:hybrid` (default arguments unless named; the last row is dense-only search at its "
            "defaults) under each variant, same store and questions. The defaults shipped are the first row.", "",
            "| variant | paraphrase hit@1 | paraphrase recall@5 | identifier hit@1 | identifier recall@5 | "
            "keyword hit@1 | all hit@1 | all recall@5 |", "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, f in var.items():
            g = {c: f.get(c, {"hit@1": 0.0, "recall@5": 0.0}) for c in ("paraphrase", "identifier", "keyword", "all")}
            lines.append(f"| {name} | {g['paraphrase']['hit@1']:.3f} | {g['paraphrase']['recall@5']:.3f} | "
                         f"{g['identifier']['hit@1']:.3f} | {g['identifier']['recall@5']:.3f} | "
                         f"{g['keyword']['hit@1']:.3f} | {g['all']['hit@1']:.3f} | {g['all']['recall@5']:.3f} |")
    nd = r.get("near_duplicates")
    if nd:
        s = r["near_duplicate_suggestion"]
        lines += [
            "", "## Near-duplicate threshold (`similar_to`)", "",
            "Cosine similarity with the embedding model of 30 pairs that say the same thing reworded "
            "(near_duplicate) and 30 pairs on the same subject that say different things (related), "
            "tests/eval/near_duplicates.jsonl.", "",
            "| kind | n | min | median | mean | max |", "|---|---:|---:|---:|---:|---:|",
        ]
        for kind in ("near_duplicate", "related"):
            d = nd[kind]
            lines.append(f"| {kind} | {d['n']} | {d['min']:.3f} | {d['median']:.3f} | {d['mean']:.3f} | "
                         f"{d['max']:.3f} |")
        b, z = nd["best_accuracy"], nd["no_false_flags"]
        low = nd["near_duplicate"]["min"]
        overlap = sum(1 for p in nd["pairs"] if p["kind"] == "related" and p["similarity"] >= low)
        lines += [
            "",
            f"- Lowest threshold above every related pair: {z['threshold']:.3f} (catches "
            f"{z['near_duplicates_caught']}/{nd['near_duplicate']['n']} near-duplicates).",
            f"- Most pairs classified right: {b['threshold']:.3f} ({b['correct']}/{b['of']}; "
            f"{b['near_duplicates_caught']} near-duplicates caught, {b['related_flagged']} related flagged).",
            f"- Suggested: **{s['threshold']:.2f}** ({MARGIN} above the most similar related pair, catches "
            f"{s['near_duplicates_caught']}/{s['of']} near-duplicates). 30 pairs each is a small sample: "
            f"{overlap} related pair(s) score above the lowest near-duplicate ({nd['near_duplicate']['min']:.3f}), "
            "so no threshold separates the two perfectly; a lower value flags related memories.",
        ]
    t = r["timings_s"]
    lines += ["", "Timings (s, shared machine): " + ", ".join(f"{k} {v}" for k, v in t.items()) + ".", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench")
    ap.add_argument("--every", type=int, default=1, help="keep every Nth question (default: all)")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the hybrid variants (fusion, RRF k, tokenizer, min_similarity)")
    args = ap.parse_args()
    memories, questions, pairs = load_memories(), load_questions(), load_pairs()
    problems = validate(memories, questions, pairs)
    if problems:
        print("the data set is inconsistent:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    questions = questions[:: max(1, args.every)]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clarity-eval-") as tmp:
        report = run_evaluation(Path(tmp) / "home", memories, questions, pairs,
                                variants=not args.no_variants)
    args_text = f" --every {args.every}" if args.every > 1 else ""
    report = {"meta": {**_machine(), "args": args_text, "elapsed_s": round(time.perf_counter() - t0, 1)}, **report}
    if report.get("near_duplicates"):
        report["near_duplicate_suggestion"] = suggest_threshold(report["near_duplicates"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / "retrieval.md").write_text(render_md(report), encoding="utf-8")
    print(render_md(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
