"""Measure the default embedding model: fastembed against clarity's direct onnxruntime encoder.

Each variant runs in a fresh child process (so RSS figures are its own), `--rounds` times, interleaved:
- `fastembed`: fastembed `TextEmbedding` on the same model folder (what clarity used before);
- `clarity-build`: `Embedder` on an empty cache (the first load of a home: builds the optimised copy);
- `clarity`: `Embedder` on a cache that holds the optimised copy (every later load).
Reported per variant (medians over rounds): RSS before the load (after imports), the RSS the load adds,
after a warm-up embed, after a batch of 32 long texts; load time; one text and 8 texts per call, wall
and CPU time (process CPU: every onnxruntime thread counts) as p50 over the calls, the same for one call
of 32 texts of mixed lengths (5 to 200 words, 3 calls), and the max cosine
distance of the vectors to fastembed's.
Then the real thing: two `clarity serve` sessions on one fresh home (real MCP clients), a store from one
and a retrieve from the other; once the non-owner is the hot standby with its model loaded, VmRSS of both
server processes (`--standby-only` runs just this part, e.g. against another checkout on PYTHONPATH).
Writes docs/bench/embed_probe.md (and .json).

`--cost` measures instead the embedding cost per text of the default model (writes docs/bench/embed_cost.md
and .json): float and int8 precision x one and two intra-op threads x the project's eval memories
(tests/eval, 277 texts of mixed lengths) embedded one at a time, in batches of 8 in arrival order (padding
to the longest of 8), and in length-bucketed batches (`onnx_model.buckets`); process CPU and wall per text,
medians of rounds, every configuration in its own process; and the cosine of int8 vectors to float ones.
`--mixed-quality` stores the eval's memories with float vectors and asks its questions with float and with int8
queries (what an existing store answers after the switch), printing the figures as one JSON line.
Usage: python scripts/embed_probe.py [--rounds 3] [--calls 100] [--standby-only | --markdown-only | --cost |
       --mixed-quality]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "docs" / "bench"
sys.path.insert(0, str(OUT.parent.parent))  # the checkout: tests.harness
TEXT = "The owner process holds the lease and serves the other sessions over a Unix socket"
CHECK_TEXTS = ["hello", "", "ünïcødé 日本語 🎉", "word " * 400, TEXT]
VARIANTS = ("fastembed", "clarity-build", "clarity")


def rss_mib() -> float:
    from tests.harness.processes import rss_kib

    return (rss_kib(os.getpid()) or 0) / 1024


def timed_calls(fn: Any, calls: int) -> tuple[float, float]:
    wall, cpu = [], []
    for i in range(calls):
        t, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def child(variant: str, cache: Path, calls: int) -> dict[str, Any]:
    import numpy as np

    from clarity.config import DEFAULT_MODEL
    from clarity.encoders.dense import Embedder, default_model_dir

    model_dir = default_model_dir(cache)
    if variant == "fastembed":
        import fastembed  # noqa: F401  (imports before the baseline, like onnxruntime below)
    else:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    base = rss_mib()
    t = time.perf_counter()
    if variant == "fastembed":
        from fastembed import TextEmbedding

        fe = TextEmbedding(model_name=DEFAULT_MODEL, specific_model_path=str(model_dir),
                           cache_dir=str(cache / "fastembed"))

        def embed(texts: list[str]) -> Any:
            return np.array(list(fe.embed(texts)))
    else:
        emb = Embedder(DEFAULT_MODEL, cache)
        emb._load()

        def embed(texts: list[str]) -> Any:
            return np.array(emb.embed(texts))
    load_s = time.perf_counter() - t
    loaded = rss_mib()
    embed(["warm up"])
    warm = rss_mib()
    one = timed_calls(lambda i: embed([f"{TEXT} {i}"]), calls)
    eight = timed_calls(lambda i: embed([f"{TEXT} {i} {j}" for j in range(8)]), max(10, calls // 4))
    mixed = [f"memory {i} " + "word " * (3 + (i * 37) % 200) for i in range(32)]
    mix = timed_calls(lambda i: embed(mixed), 3)
    embed([f"long text {i} " + "word " * 300 for i in range(32)])
    big = rss_mib()
    return {"load_s": load_s, "rss_base": base, "load_mib": loaded - base, "warm_mib": warm - base,
            "big_mib": big - base, "one_wall_ms": one[0], "one_cpu_ms": one[1],
            "eight_wall_ms": eight[0], "eight_cpu_ms": eight[1], "mixed_wall_ms": mix[0], "mixed_cpu_ms": mix[1],
            "vectors": embed(CHECK_TEXTS).tolist()}


def eval_texts(kind: str) -> list[str]:
    """`memories`: the eval set's 277 memories (median 57 tokens); `queries`: its 427 questions (median 11)."""
    from tests.eval.data import load_memories, load_questions

    return [m.content for m in load_memories()] if kind == "memories" else [q.query for q in load_questions()]


def cost_child(precision: str, threads: int, kind: str, cache: Path, rounds: int) -> dict[str, Any]:
    """Per-text CPU and wall of one precision on `threads` intra-op threads (every call), three ways."""
    import numpy as np

    from clarity.config import DEFAULT_MODEL
    from clarity.encoders.dense import Embedder

    emb = Embedder(DEFAULT_MODEL, cache, precision=precision)  # type: ignore[arg-type]
    emb._load()
    enc = emb._model
    assert enc.precision == precision, enc.precision
    session = enc._new_session(enc._model_path, threads)
    enc._session = enc._batch_session = session  # every call on `threads` threads
    texts = eval_texts(kind)
    encs = enc._tok.encode_batch(texts)

    def single() -> None:
        for t in texts:
            enc.encode([t], 32)

    def arrival8() -> None:
        for k in range(0, len(encs), 8):
            enc._forward(session, encs[k:k + 8])

    def bucketed() -> None:
        enc.encode(texts, 32)

    out: dict[str, Any] = {"precision": precision, "threads": threads, "kind": kind, "texts": len(texts)}
    for name, fn in (("single", single), ("batch8", arrival8), ("bucketed", bucketed)):
        fn()  # warm
        cpu, wall = [], []
        for _ in range(rounds):
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall.append((time.perf_counter() - t) * 1000 / len(texts))
            cpu.append((time.process_time() - c) * 1000 / len(texts))
        out[name] = {"cpu_ms": round(statistics.median(cpu), 3), "wall_ms": round(statistics.median(wall), 3)}
    out["vectors_single"] = np.array([enc.encode([t], 32)[0] for t in texts]).tolist()
    out["vectors_bucketed"] = enc.encode(texts, 32).tolist()
    return out


def cost(rounds: int, kinds: list[str]) -> dict[str, Any]:
    import numpy as np

    from tests.harness.machine import loadavg

    rows: list[dict[str, Any]] = []
    load = [loadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, precision, threads in [(k, p, t) for k in kinds for p in ("float", "int8") for t in (1, 2)]:
            proc = subprocess.run([sys.executable, __file__, "--cost-child", f"{precision}:{threads}:{kind}",
                                   "--cache", str(Path(tmp) / "cache"), "--rounds", str(rounds)],
                                  capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{precision} {threads} failed:\n{proc.stderr}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"cost {kind} {precision} x{threads}: done", file=sys.stderr, flush=True)
    load.append(loadavg())
    quality: dict[str, Any] = {}
    for r in rows:
        single, bucketed = np.array(r.pop("vectors_single")), np.array(r.pop("vectors_bucketed"))
        if r["precision"] == "float" and r["threads"] == 1:
            ref = single
        if r["threads"] == 1:
            key = f"{r['kind']} {r['precision']}"
            cos = (single * ref).sum(1)
            same = (single * bucketed).sum(1)
            quality[key] = {"cosine_to_float_mean": round(float(cos.mean()), 4),
                            "cosine_to_float_min": round(float(cos.min()), 4),
                            "bucketed_vs_single_min": round(float(same.min()), 5)}
    return {"meta": {"python": platform.python_version(), "machine": platform.machine(), "cores": os.cpu_count(),
                     "rounds": rounds, "loadavg_start_end": load}, "rows": rows, "quality": quality}


def write_cost_markdown(report: dict[str, Any]) -> None:
    meta = report["meta"]
    lines = ["# Embedding cost per text (scripts/embed_probe.py --cost)", "",
             f"all-MiniLM-L6-v2 on {meta['cores']} cores, Python {meta['python']}; texts of the eval set "
             "(tests/eval): its 277 memories (median 57 tokens, 31 to 256) and its 427 questions (median 11 tokens, "
             f"5 to 20), medians of {meta['rounds']} rounds, each configuration "
             "in its own process, every call on the given number of intra-op threads. CPU is process CPU "
             f"(all threads). Load average (1, 5, 15 min) at start and end: {meta['loadavg_start_end']}.", "",
             "| texts | precision | threads | one at a time CPU / wall ms | batches of 8, arrival order | "
             "length-bucketed batches |", "|---|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        cells = [f"{r[k]['cpu_ms']:.2f} / {r[k]['wall_ms']:.2f}" for k in ("single", "batch8", "bucketed")]
        lines.append(f"| {r['kind']} | {r['precision']} | {r['threads']} | " + " | ".join(cells) + " |")
    lines += ["", "Cosine of each text's vector to the float one (texts one at a time), and the lowest cosine "
              "of a text's bucketed-batch vector to its own one-at-a-time vector:", "",
              "| texts, precision | mean cosine to float | min cosine to float | min bucketed vs single |",
              "|---|---:|---:|---:|"]
    for key, q in report["quality"].items():
        lines.append(f"| {key} | {q['cosine_to_float_mean']:.4f} | {q['cosine_to_float_min']:.4f} | "
                     f"{q['bucketed_vs_single_min']:.5f} |")
    (OUT / "embed_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def mixed_quality() -> dict[str, Any]:
    """The eval's memories stored with float vectors, its questions asked with the model at each precision:
    what a store written before the switch to int8 answers after it (hybrid and semantic retrieve)."""
    from clarity.config import DEFAULT_MODEL, load_settings
    from clarity.encoders.dense import Embedder
    from clarity.memory.service import build_service
    from tests.eval import evaluate as ev
    from tests.eval.data import load_memories, load_questions

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(tmp) / "home")
        service = build_service(settings, embedder=Embedder(DEFAULT_MODEL, settings.cache_dir, precision="float"))
        try:
            questions = load_questions()
            by_uuid = ev.load_into(service, load_memories())
            for precision in ("float", "int8"):
                service.embedder = Embedder(DEFAULT_MODEL, settings.cache_dir, precision=precision)
                assert service.embedder.embed_one("probe") and service.embedder.precision == precision
                out[f"float documents, {precision} queries"] = {
                    mode: ev.score(questions, ev.dense_rankings(service, questions, by_uuid, mode))
                    for mode in ("hybrid", "semantic")}
        finally:
            service.close()
    return out


def run_child(variant: str, cache: Path, calls: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--cache", str(cache),
                           "--calls", str(calls)], capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def _standby_rss(home: Path) -> dict[str, Any]:
    import anyio

    from tests.harness.processes import rss_kib
    from tests.harness.sessions import open_sessions

    async with open_sessions(home, 2) as (a, b):
        await a.call("store_memory", {"content": "the standby probe stores one memory", "memory_type": "note"})
        await b.call("retrieve_memory", {"query": "standby probe"})
        roles: dict[str, int] = {}
        with anyio.fail_after(120):
            while True:
                me = [(await s.call("coordination_status"))["this_process"] for s in (a, b)]
                roles = {p["role"]: p["pid"] for p in me}
                standby = [p for p in me if p["role"] == "standby" and p["model_loaded"]]
                if standby and "owner" in roles:
                    break
                await anyio.sleep(0.25)
        await anyio.sleep(1.0)  # let the standby settle in its wait
        return {role: round((rss_kib(pid) or 0) / 1024, 1) for role, pid in roles.items()}


def standby_rss(rounds: int) -> dict[str, float]:
    import anyio

    out: list[dict[str, Any]] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            out.append(anyio.run(_standby_rss, Path(tmp) / "home"))
        print(f"standby round {r + 1}/{rounds}: {out[-1]}", file=sys.stderr, flush=True)
    return {role: statistics.median(o[role] for o in out) for role in out[0]}


def write_markdown(report: dict[str, Any]) -> None:
    meta, table, servers = report["meta"], report["table"], report["servers_rss_mib"]
    lines = ["# Embedding model probe (scripts/embed_probe.py)", "",
             f"all-MiniLM-L6-v2 (int8 weights), medians of {meta['rounds']} rounds, each variant in a fresh process; "
             f"{meta['calls']} one-text calls, {max(10, meta['calls'] // 4)} eight-text calls. RSS in MiB over the "
             "process after importing the runtime; CPU is process CPU time (all onnxruntime threads).", "",
             "| variant | RSS base | +load | +warm | +32 long texts | load s | 1 text wall ms | 1 text CPU ms "
             "| 8 texts wall ms | 8 texts CPU ms | 32 mixed wall ms | 32 mixed CPU ms | min cosine vs fastembed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, row in table.items():
        lines.append(f"| {variant} | {row['rss_base']:.0f} | {row['load_mib']:.0f} | {row['warm_mib']:.0f} | "
                     f"{row['big_mib']:.0f} | {row['load_s']:.2f} | {row['one_wall_ms']:.2f} | "
                     f"{row['one_cpu_ms']:.2f} | {row['eight_wall_ms']:.2f} | {row['eight_cpu_ms']:.2f} | "
                     f"{row['mixed_wall_ms']:.0f} | {row['mixed_cpu_ms']:.0f} | "
                     f"{row['min_cosine_vs_fastembed']:.8f} |")
    lines += ["", "Two `clarity serve` sessions on one fresh home after a store and a retrieve, once the non-owner "
              "is the hot standby with its model loaded (VmRSS, MiB, median of rounds): "
              + ", ".join(f"{role} {mib:.0f}" for role, mib in sorted(servers.items())) + "."]
    (OUT / "embed_probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--child")
    ap.add_argument("--cache")
    ap.add_argument("--standby-only", action="store_true")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    ap.add_argument("--cost", action="store_true", help="the embedding cost per text (embed_cost.md)")
    ap.add_argument("--cost-child")
    ap.add_argument("--texts", default="memories,queries", help="--cost: memories, queries or both")
    ap.add_argument("--mixed-quality", action="store_true",
                    help="eval memories stored in float, questions asked in float and in int8 (one JSON line)")
    ap.add_argument("--out", help="--cost: the folder of embed_cost.json/.md (default docs/bench)")
    args = ap.parse_args()
    global OUT
    OUT = Path(args.out) if args.out else OUT
    if args.cost_child:
        precision, threads, kind = args.cost_child.split(":")
        print(json.dumps(cost_child(precision, int(threads), kind, Path(args.cache), args.rounds)))
        return
    if args.mixed_quality:
        print(json.dumps(mixed_quality()))
        return
    if args.cost:
        report = cost(args.rounds, args.texts.split(","))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "embed_cost.json").write_text(json.dumps(report, indent=2) + "\n")
        write_cost_markdown(report)
        return
    if args.child:
        print(json.dumps(child(args.child, Path(args.cache), args.calls)))
        return
    if args.markdown_only:
        write_markdown(json.loads((OUT / "embed_probe.json").read_text()))
        return
    if args.standby_only:
        print(json.dumps(standby_rss(args.rounds)))
        return
    import numpy as np

    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            cache = Path(tmp) / f"round{r}"
            for variant in VARIANTS:  # clarity-build fills the cache clarity then loads from
                runs[variant].append(run_child(variant, cache, args.calls))
                print(f"round {r + 1}/{args.rounds} {variant}: done", file=sys.stderr, flush=True)
    ref = np.array(runs["fastembed"][0]["vectors"])
    keys = ("rss_base", "load_mib", "warm_mib", "big_mib", "load_s", "one_wall_ms", "one_cpu_ms",
            "eight_wall_ms", "eight_cpu_ms", "mixed_wall_ms", "mixed_cpu_ms")
    table: dict[str, dict[str, float]] = {}
    for variant, rs in runs.items():
        row = {k: round(statistics.median(r[k] for r in rs), 3) for k in keys}
        row["min_cosine_vs_fastembed"] = float(min((np.array(r["vectors"]) * ref).sum(1).min() for r in rs))
        table[variant] = row
    servers = standby_rss(args.rounds)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "rounds": args.rounds,
            "calls": args.calls}
    report = {"meta": meta, "table": table, "servers_rss_mib": servers}
    (OUT / "embed_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)


if __name__ == "__main__":
    main()
