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
Usage: python scripts/embed_probe.py [--rounds 3] [--calls 100] [--standby-only | --markdown-only]
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
    args = ap.parse_args()
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
