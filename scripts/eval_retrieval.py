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
  python scripts/eval_retrieval.py --recipes [--locomo PATH/locomo10.json]
      # what to index with the content (clarity.memory.indexed_text): every variant of
      # tests/eval/recipes.py on this set (and on LoCoMo, whose file is not shipped: pass its path);
      # writes DIR/indexed_text.json and .md (indexed_text-float.* with CLARITY_MODEL_PRECISION=float)
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


def render_recipes(r: dict[str, Any]) -> str:
    m = r["meta"]
    variants = r["variants"]
    shipped = r["shipped"]
    lines = [
        "# What is indexed with a memory's content (clarity.memory.indexed_text)", "",
        f"Measured {m['date']} on {m['machine']}, {m['cores']} cores, commit `{m['commit']}`; one run of "
        f"`python scripts/eval_retrieval.py --recipes{m['args']}` ({m['elapsed_s']:.0f} s), model "
        f"`{m['model']['name']}` at precision {m['model']['precision']}. Each variant "
        "indexes every memory through the service's own write path (real engine, real model) with a dense "
        "recipe (what the embedded text holds besides the content) and a sparse one (the BM25 text); "
        "queries are unchanged. `retrieve` with its defaults (hybrid), limit 5, min_similarity -1.", "",
        "Project evaluation (tests/eval; every memory imported the same day: the date is the same for all, "
        "and they have no context): hit@1 / recall@5.", "",
        "| dense / sparse | paraphrase | identifier | keyword | all |", "|---|---:|---:|---:|---:|",
    ]
    for name, row in variants.items():
        p = row["project"]
        cells = [f"{p[c]['hit@1']:.3f} / {p[c]['recall@5']:.3f}" if c in p else "-"
                 for c in ("paraphrase", "identifier", "keyword", "all")]
        mark = " **(shipped)**" if name == shipped else ""
        lines.append(f"| {name.replace('|', '/')}{mark} | " + " | ".join(cells) + " |")
    if any("locomo" in row for row in variants.values()):
        cats = ("single-hop", "multi-hop", "temporal", "open-domain", "adversarial", "all")
        first = next(row["locomo"] for row in variants.values() if "locomo" in row)
        lines += [
            "", "LoCoMo (Maharana et al., ACL 2024; 10 long conversations, 5,882 turns, one store each; every "
            "turn a memory created at its session's date, with the previous turn as its `context`; "
            "tests/eval/locomo.py): recall@5 of the evidence turns; questions per category: "
            + ", ".join(f"{c} {first[c]['n']}" for c in cats if c in first and c != "all")
            + f"; `all`: the first four ({first['all']['n']}), adversarial left out.", "",
            "| dense / sparse | " + " | ".join(cats) + " |", "|---|" + "---:|" * len(cats),
        ]
        for name, row in variants.items():
            if "locomo" in row:
                lo = row["locomo"]
                mark = " **(shipped)**" if name == shipped else ""
                cells = [f"{lo[c]['recall@5']:.3f}" if c in lo else "-" for c in cats]
                lines.append(f"| {name.replace('|', '/')}{mark} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def run_recipes(args: argparse.Namespace) -> int:
    from clarity.memory import indexed_text
    from tests.eval.recipes import VARIANTS, recipe_report

    memories, questions = load_memories(), load_questions()[:: max(1, args.every)]
    t0 = time.perf_counter()
    report = recipe_report(memories, questions, args.locomo, VARIANTS,
                           log=lambda name, row: print(name, json.dumps(row), flush=True))
    shipped = next((n for n, (d, s) in VARIANTS.items()
                    if d == indexed_text.DENSE and s == indexed_text.SPARSE), "")
    args_text = (f" --every {args.every}" if args.every > 1 else "") + (" --locomo PATH" if args.locomo else "")
    model = report.pop("_model")
    out = {"meta": {**_machine(), "args": args_text, "elapsed_s": round(time.perf_counter() - t0, 1), "model": model},
           "shipped": shipped, "variants": report}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "indexed_text" if model["precision"] == "int8" else f"indexed_text-{model['precision']}"
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(render_recipes(out), encoding="utf-8")
    print(render_recipes(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bench")
    ap.add_argument("--every", type=int, default=1, help="keep every Nth question (default: all)")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the hybrid variants (fusion, RRF k, tokenizer, min_similarity)")
    ap.add_argument("--recipes", action="store_true",
                    help="compare what is indexed with the content (tests/eval/recipes.py) instead")
    ap.add_argument("--locomo", type=Path, help="with --recipes: LoCoMo's locomo10.json (not shipped)")
    args = ap.parse_args()
    if args.locomo is not None and not args.locomo.is_file():
        print(f"--locomo: {args.locomo} is not a file", file=sys.stderr)
        return 2
    if args.recipes:
        return run_recipes(args)
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
