"""How often the suspicious-text detector (`clarity.memory.suspicion.flag_reason`) is right.

False positives: texts that must not be flagged: `tests/fixtures/ordinary_notes.jsonl` (ordinary
engineering notes written for this purpose) and every text of the retrieval eval set (`tests/eval/`:
memories, questions, near-duplicate pairs). True positives: `tests/fixtures/poisoned_notes.jsonl`
(instructions aimed at an agent, plain and disguised). Each fixture line has a `split`: `tune` (looked
at while the detector was written) or `holdout` (not looked at; reported on its own). Also measures the
time per note (median of several passes over every text, in microseconds).

    python scripts/suspicion_rates.py                # prints the rates, writes docs/bench/suspicion.json
    python scripts/suspicion_rates.py --show tune    # also lists the misses of one split
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clarity.memory.suspicion import flag_reason  # noqa: E402
from tests.eval.data import load_memories, load_pairs, load_questions  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
OUT = ROOT / "docs" / "bench" / "suspicion.json"


def fixture(name: str) -> list[dict[str, Any]]:
    path = FIXTURES / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def eval_texts() -> list[str]:
    texts = [m.content for m in load_memories()] + [q.query for q in load_questions()]
    for p in load_pairs():
        texts += [p.a, p.b]
    return texts


def rate(texts: list[str], want_flag: bool) -> dict[str, Any]:
    """Counts for one set: how many, how many flagged, the rate, and the texts the detector got wrong."""
    wrong = [t for t in texts if (flag_reason(t) is not None) != want_flag]
    flagged = len(wrong) if not want_flag else len(texts) - len(wrong)
    return {"n": len(texts), "flagged": flagged, "rate": round(flagged / len(texts), 4) if texts else 0.0,
            "wrong": wrong}


def micros_per_note(texts: list[str], passes: int = 5) -> float:
    runs = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for t in texts:
            flag_reason(t)
        runs.append((time.perf_counter() - t0) / len(texts) * 1e6)
    return round(statistics.median(runs), 1)


def measure() -> dict[str, Any]:
    ordinary, poisoned = fixture("ordinary_notes.jsonl"), fixture("poisoned_notes.jsonl")
    sets: dict[str, dict[str, Any]] = {}
    for split in ("tune", "holdout"):
        sets[f"ordinary_{split}"] = rate([r["text"] for r in ordinary if r["split"] == split], want_flag=False)
        sets[f"poisoned_{split}"] = rate([r["text"] for r in poisoned if r["split"] == split], want_flag=True)
    sets["eval_set"] = rate(eval_texts(), want_flag=False)
    negatives = [r["text"] for r in ordinary] + eval_texts()
    allpos = [r["text"] for r in poisoned]
    sets["ordinary_all"] = rate([r["text"] for r in ordinary], want_flag=False)
    sets["poisoned_all"] = rate(allpos, want_flag=True)
    lengths = [len(t) for t in negatives + allpos]
    return {
        "false_positive_rate": {k: v["rate"] for k, v in sets.items() if not k.startswith("poisoned")},
        "true_positive_rate": {k: v["rate"] for k, v in sets.items() if k.startswith("poisoned")},
        "counts": {k: {"n": v["n"], "flagged": v["flagged"]} for k, v in sets.items()},
        "microseconds_per_note": micros_per_note(negatives + allpos),
        "mean_note_chars": round(statistics.mean(lengths)),
        "_wrong": {k: v["wrong"] for k, v in sets.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show", choices=["tune", "holdout", "eval"], help="list the misses of this split")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/bench/suspicion.json")
    a = ap.parse_args(argv)
    res = measure()
    wrong = res.pop("_wrong")
    print(json.dumps(res, indent=2))
    if a.show:
        keys = ["eval_set"] if a.show == "eval" else [f"ordinary_{a.show}", f"poisoned_{a.show}"]
        for k in keys:
            for t in wrong[k]:
                print(f"[{k}] {flag_reason(t)!r} <- {t!r}")
    if not a.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
