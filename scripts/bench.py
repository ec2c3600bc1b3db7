#!/usr/bin/env python
"""Clarity benchmark through MCP, with real `clarity serve` processes, per engine and store size.

For every engine (`--engines`, chosen by the CLARITY_ENGINE variable: `edge` is the default engine,
`qdrant` the qdrant-client local store) and every store size (`--sizes`), on a copy of a store built
straight through the engine (`tests.harness.stores`, cached under `--cache`):
  first call of a new owner (engine open + model load), store / retrieve / list_memories (limit 20) /
  memory_stats p50, owner RSS, RSS of a non-owner session, failover (owner SIGKILLed -> next successful
  call of another session).
Per engine, at the smallest size: N sessions' aggregate store throughput against one session's (and the
CPU each process role spends per store), and one session against mcp-server-qdrant 0.8.1 (run offline from
its own virtualenv under `--cache`; same model file, same Python MCP client, fresh empty stores, calls
interleaved), once per `--busy` level: 0 is the machine as it is, 2 adds two busy-loop processes (each
spinning one core) for that comparison only.
Then (not in --smoke) the embedding cost per text (`scripts/embed_probe.py --cost`: float and int8, one and
two threads, one at a time and length-bucketed batches) and retrieval quality with each precision of the
model (`scripts/eval_retrieval.py` with CLARITY_MODEL_PRECISION=float and =int8).

    python scripts/bench.py --smoke      # seconds to a minute: 200 memories, no peer (checks the harness)
    python scripts/bench.py --quick      # about a minute or two: 1k memories, peer included
    python scripts/bench.py              # full: 1k, 10k, 100k memories (the first build of 100k is slow)

Writes OUT/results.json (every raw figure and the machine), OUT/results.md and OUT/results.png (default
OUT: docs/bench; results.md ends with the summary of issue 20's figures) and prints the tables. Progress goes
to stderr. Every server this run starts carries a run marker and is killed at the end if still alive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.harness

from tests.harness import bench_report as report  # noqa: E402
from tests.harness import bench_scenarios as sc  # noqa: E402
from tests.harness.machine import loadavg, machine_info  # noqa: E402
from tests.harness.peer import PEER_VERSION, ensure_peer_venv  # noqa: E402
from tests.harness.processes import reap  # noqa: E402
from tests.harness.progress import progress  # noqa: E402
from tests.harness.stores import FORMAT, EngineUnavailable, copy_store, template_store  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"sizes": [200], "pairs": 3, "reads": 2, "failovers": 1, "failover_n": 2, "sessions": 2,
              "stores": 3, "peer": False, "busy": [0], "embed_rounds": 0, "quality": False},
    "quick": {"sizes": [1000], "pairs": 60, "reads": 3, "failovers": 2, "failover_n": 3, "sessions": 8,
              "stores": 40, "peer": True, "busy": [0, 2], "embed_rounds": 1, "quality": True},
    "full": {"sizes": [1000, 10000, 100000], "pairs": 30, "reads": 5, "failovers": 5, "failover_n": 3,
             "sessions": 8, "stores": 40, "peer": True, "busy": [0, 2], "embed_rounds": 3, "quality": True},
}
QUALITY_KEYS = (("paraphrase", "hit@1"), ("paraphrase", "recall@5"), ("identifier", "hit@1"),
                ("identifier", "recall@5"), ("keyword", "hit@1"), ("all", "hit@1"), ("all", "recall@5"))


@contextmanager
def busy_loops(n: int) -> Iterator[list[int]]:
    """`n` processes spinning one core each (the "loaded machine" of the peer comparison), killed after."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
VECTORS = ("real all-MiniLM-L6-v2 vectors for up to 1000 distinct sentences; every further memory is a variant "
           "of one of them with the base vector plus Gaussian noise (sigma 0.02 per dimension), renormalised")


class Bench:
    def __init__(self, a: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
        self.a, self.work, self.res = a, work, results
        self.marker = f"bench-{uuid.uuid4().hex[:8]}-"
        self.k = 0

    def place(self, name: str) -> tuple[Path, Path, str]:
        """(a fresh folder, its log folder, a session marker) for one scenario."""
        self.k += 1
        d = self.work / f"{self.k:02d}-{name}"
        (d / "logs").mkdir(parents=True)
        return d, d / "logs", f"{self.marker}{self.k}-"

    async def engine_size(self, engine: str, size: int, env: dict[str, str]) -> bool:
        """`migrated`: a copy of the qdrant-client (legacy) store opened by the default engine, so the
        first call includes the one-time migration to Edge; the rest measures Edge on the migrated store."""
        a = self.a
        try:
            tpl, info = template_store(Path(a.cache), size, "qdrant" if engine == "migrated" else engine)
        except EngineUnavailable as e:
            self.res["engines_unavailable"][engine] = str(e)
            return False
        self.res["stores"][f"{engine}-{size}"] = info
        d, logs, marker = self.place(f"{engine}-{size}-owner")
        reads = a.reads if not (engine == "qdrant" and size >= 50_000) else min(a.reads, 2)
        own = await sc.owner_scenario(copy_store(tpl, d / "home"), env, logs, marker, a.pairs, reads, seed=size)
        self.res["owner"].append({"engine": engine, "size": size, **own})
        fo: dict[str, Any] = {"recovery": {"p50": None, "max": None, "n": 0}}
        if a.failovers and engine != "migrated":
            d, logs, marker = self.place(f"{engine}-{size}-failover")
            fo = await sc.failover_scenario(copy_store(tpl, d / "home"), env, logs, marker, a.failovers,
                                            a.failover_n, seed=size + 1)
            self.res["failover"].append({"engine": engine, "size": size, **fo})
        self.res["rows"].append({
            "engine": engine, "size": size, "engine_name": own.get("engine_name"),
            "first_call_ms": own.get("first_call_ms"), "index_wait_s": own.get("index_wait_s"),
            "store_p50": own["store"]["p50"],
            "retrieve_p50": own["retrieve"]["p50"], "list_p50": own["list"]["p50"],
            "stats_p50": own["stats"]["p50"], "owner_rss_mib": own.get("owner_rss_mib"),
            "non_owner_rss_mib": own.get("non_owner_rss_mib"), "standby_rss_mib": own.get("standby_rss_mib"),
            "failover_p50": fo["recovery"]["p50"],
            "failover_max": fo["recovery"]["max"], "failover_n": fo["recovery"]["n"],
            "errors": own["error_count"] + fo.get("error_count", 0), "stages": own.get("stages")})
        return True

    async def sessions_and_peer(self, engine: str, env: dict[str, str]) -> None:
        a = self.a
        size = a.sizes[0]
        tpl, _info = template_store(Path(a.cache), size, engine)
        runs = {}
        for key, n in (("one", 1), ("many", a.sessions)):
            d, logs, marker = self.place(f"{engine}-throughput-{n}")
            runs[key] = await sc.throughput_scenario(copy_store(tpl, d / "home"), env, logs, marker, n, a.stores,
                                                     seed=10 + n)
        self.res["throughput"].append({"engine": engine, "size": size, **runs})
        if a.peer:
            python = ensure_peer_venv(Path(a.cache))
            for busy in a.busy:
                d, logs, marker = self.place(f"{engine}-peer-busy{busy}")
                with busy_loops(busy):
                    load = loadavg()
                    p = await sc.peer_scenario(d / "home", python, d / "peer", env, logs, marker, a.pairs,
                                               seed=99 + busy)
                label = engine if busy == 0 else f"{engine}, {busy} busy loops"
                self.res["peer"].append({"engine": label, "busy_loops": busy, "loadavg_at_start": load,
                                         "peer_version": PEER_VERSION, **p})

    async def run(self) -> None:
        a = self.a
        steps = len(a.engines) * (len(a.sizes) + 1)
        with progress(steps, "bench") as bar:
            for engine in a.engines:
                # the model's optimised copy is made once and shared by the run's homes, as a real home
                # keeps the one its first owner made: a "first call" is a new owner's, not a new home's
                env = {"CLARITY_ENGINE": "edge" if engine == "migrated" else engine,
                       "CLARITY_COORDINATION_MODE": "forward",
                       "CLARITY_MODEL_CACHE": str(Path(a.cache).expanduser() / "models")}
                ok = True
                for size in a.sizes:
                    bar.update(note=f"{engine} {size:,} memories")
                    ok = await self.engine_size(engine, size, env)
                    bar.advance()
                    if not ok:
                        break
                if ok and engine != "migrated":
                    bar.update(note=f"{engine}: sessions and peer")
                    await self.sessions_and_peer(engine, env)
                bar.advance()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="checks the harness in about a minute (no peer)")
    mode.add_argument("--quick", action="store_true", help="1k memories, about a minute or two")
    p.add_argument("--engines", nargs="+", default=["edge", "qdrant"], choices=("edge", "qdrant", "migrated"),
                   help="migrated: the qdrant-client store of each size, opened by the default engine (the "
                        "first call includes the migration to Edge)")
    p.add_argument("--sizes", type=int, nargs="+", help="store sizes (full 1000 10000 100000; quick 1000)")
    p.add_argument("--pairs", type=int, help="store+retrieve pairs of the one-session and peer rows")
    p.add_argument("--reads", type=int, help="list_memories and memory_stats calls per size")
    p.add_argument("--failovers", type=int, help="owner kills per engine and size (0: none)")
    p.add_argument("--sessions", type=int, help="N of the throughput row (default 8)")
    p.add_argument("--stores", type=int, help="stores per session in the throughput rows")
    p.add_argument("--busy", type=int, nargs="+", help="busy-loop processes during the peer comparison, one run "
                   "per value (default 0 2; smoke 0)")
    p.add_argument("--embed-rounds", type=int, help="rounds of the embedding cost per text (0: skip; default "
                   "quick 1, full 3, smoke 0)")
    quality = p.add_mutually_exclusive_group()
    quality.add_argument("--quality", action="store_true", default=None,
                         help="retrieval quality with float and int8 precision (scripts/eval_retrieval.py)")
    quality.add_argument("--no-quality", dest="quality", action="store_false")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument("--peer", action="store_true", default=None, help="compare with mcp-server-qdrant")
    peer.add_argument("--no-peer", dest="peer", action="store_false")
    default_cache = os.environ.get("CLARITY_BENCH_CACHE", str(Path.home() / ".cache" / "clarity-bench"))
    p.add_argument("--cache", default=default_cache,
                   help="built stores, vectors and the peer's virtualenv (outside the repo; reused)")
    p.add_argument("--out", default=str(REPO / "docs" / "bench"), help="output folder (default docs/bench)")
    p.add_argument("--keep", action="store_true", help="keep the run's scratch folder (server logs)")
    p.add_argument("--from-json", help="only re-render results.md/.png from this results.json")
    a = p.parse_args(argv)
    a.mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    for key, value in PRESETS[a.mode].items():
        if getattr(a, key, None) is None:
            setattr(a, key, value)
    a.failover_n = PRESETS[a.mode]["failover_n"]
    if min(a.sizes) < 1 or a.pairs < 1 or a.reads < 1 or a.failovers < 0 or a.sessions < 2 or a.stores < 1:
        p.error("sizes, --pairs, --reads, --stores must be >= 1, --failovers >= 0, --sessions >= 2")
    if min(a.busy) < 0 or a.embed_rounds < 0:
        p.error("--busy and --embed-rounds must be >= 0")
    a.sizes = sorted(set(a.sizes))
    return a


def embedding_cost(rounds: int, out: Path) -> dict[str, Any]:
    """`scripts/embed_probe.py --cost` (writes OUT/embed_cost.json and .md): its report."""
    subprocess.run([sys.executable, str(REPO / "scripts" / "embed_probe.py"), "--cost", "--rounds", str(rounds),
                    "--out", str(out)], check=True, timeout=3600, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads((out / "embed_cost.json").read_text())
    return result


def retrieval_quality(models: Path) -> dict[str, Any]:
    """The project's retrieval eval (clarity:hybrid, the default mode) with each precision of the model, and
    with the memories stored in float but the questions asked in int8 (a store written before the switch)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("float", "int8"):
            env = {**os.environ, "CLARITY_MODEL_PRECISION": precision, "CLARITY_MODEL_CACHE": str(models)}
            d = Path(tmp) / precision
            subprocess.run([sys.executable, str(REPO / "scripts" / "eval_retrieval.py"), "--out", str(d)], env=env,
                           check=True, timeout=3600, stdout=subprocess.DEVNULL)
            r = json.loads((d / "retrieval.json").read_text())
            out[precision] = {f"{cat} {metric}": r["methods"]["clarity:hybrid"][cat][metric]
                              for cat, metric in QUALITY_KEYS}
            out[precision]["near-duplicates caught"] = r["near_duplicate_suggestion"]["near_duplicates_caught"]
        env = {**os.environ, "CLARITY_MODEL_CACHE": str(models)}
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "embed_probe.py"), "--mixed-quality"], env=env,
                              check=True, timeout=3600, capture_output=True, text=True)
        mixed = json.loads(proc.stdout.strip().splitlines()[-1])["float documents, int8 queries"]["hybrid"]
        out["float documents, int8 queries"] = {f"{cat} {metric}": mixed[cat][metric] for cat, metric in QUALITY_KEYS}
        out["float documents, int8 queries"]["near-duplicates caught"] = "-"
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def summary_markdown(res: dict[str, Any]) -> list[str]:
    """Issue 20's figures in one place: peer ratios quiet and loaded, N sessions vs one, CPU per store, the
    embedding cost per text and retrieval quality by precision."""
    lines = ["", "## Summary: the model's cost (issue 20)", "",
             f"Machine load average at the start and end of the run: {res['machine'].get('loadavg_start')} -> "
             f"{res['machine'].get('loadavg_end')} (other work on the machine counts: compare ratios within "
             "this run).", ""]
    if res["peer"]:
        lines += ["| vs mcp-server-qdrant | busy loops | load at start | store p50 ms (Clarity / peer) | store ratio "
                  "| retrieve p50 ms (Clarity / peer) | retrieve ratio |", "|---|---:|---|---:|---:|---:|---:|"]
        for p in res["peer"]:
            cs, ps = p["clarity_store"]["p50"], p["peer_store"]["p50"]
            cr, pr = p["clarity_retrieve"]["p50"], p["peer_retrieve"]["p50"]
            lines.append(f"| {p['engine']} | {p.get('busy_loops', 0)} | {' '.join(p.get('loadavg_at_start', []))} | "
                         f"{cs} / {ps} | {_ratio(cs, ps)} | {cr} / {pr} | {_ratio(cr, pr)} |")
        lines.append("")
    for t in res["throughput"]:
        one, many = t["one"], t["many"]
        lines += [f"{t['engine']}: {many['n']} sessions store {many['stores_per_s']} memories/s against one "
                  f"session's {one['stores_per_s']}: **{_ratio(many['stores_per_s'], one['stores_per_s'])}**. CPU ms "
                  f"per store (owner, other sessions, client): one session {one['cpu_ms_per_store']}, "
                  f"{many['n']} sessions {many['cpu_ms_per_store']}.", ""]
    lines += report.build_window_lines(res)
    cost = res.get("embedding_cost")
    if cost:
        lines += ["Embedding cost per text (process CPU / wall ms; scripts/embed_probe.py --cost, "
                  f"{cost['meta']['rounds']} round(s), load {cost['meta']['loadavg_start_end']}):", "",
                  "| texts | precision | threads | one at a time | batches of 8, arrival order | length-bucketed |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in cost["rows"]:
            cells = [f"{r[k]['cpu_ms']:.2f} / {r[k]['wall_ms']:.2f}" for k in ("single", "batch8", "bucketed")]
            lines.append(f"| {r['kind']} | {r['precision']} | {r['threads']} | " + " | ".join(cells) + " |")
        lines += ["", "| texts, precision | mean cosine to float | min cosine to float "
                  "| min bucketed vs one at a time |", "|---|---:|---:|---:|"]
        for key, q in cost["quality"].items():
            lines.append(f"| {key} | {q['cosine_to_float_mean']:.4f} | {q['cosine_to_float_min']:.4f} | "
                         f"{q['bucketed_vs_single_min']:.5f} |")
        lines.append("")
    quality = res.get("retrieval_quality")
    if quality:
        keys = list(quality["float"])
        lines += ["Retrieval quality on the project's eval (scripts/eval_retrieval.py, hybrid retrieve) by precision "
                  "(gates: identifier hit@1 >= 0.95, paraphrase recall@5 >= 0.85):", "",
                  "| precision | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for precision, q in quality.items():
            lines.append(f"| {precision} | " + " | ".join(f"{q[k]:.3f}" if isinstance(q[k], float) else str(q[k])
                                                         for k in keys) + " |")
        lines.append("")
    return lines


def write_outputs(res: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    report.write_markdown(res, out / "results.md")
    with (out / "results.md").open("a") as f:
        f.write("\n".join(summary_markdown(res)) + "\n")
    report.write_chart(res, out / "results.png")
    report.print_tables(res)
    print(f"wall time {res['wall_s']:.1f} s; wrote {out}/results.json, results.md, results.png", flush=True)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.from_json:
        write_outputs(json.loads(Path(a.from_json).read_text()), Path(a.out))
        return 0
    cache = Path(a.cache).resolve()
    work = cache / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    work.mkdir(parents=True)
    res: dict[str, Any] = {
        "machine": machine_info(REPO), "engines_unavailable": {}, "stores": {}, "rows": [], "owner": [],
        "failover": [], "throughput": [], "peer": [],
        "config": {"mode": a.mode, "mode_flag": {"smoke": "--smoke", "quick": "--quick", "full": ""}[a.mode],
                   "engines": a.engines, "sizes": a.sizes, "pairs": a.pairs, "reads": a.reads,
                   "failovers": a.failovers, "failover_sessions": a.failover_n, "sessions": a.sessions,
                   "stores_per_session": a.stores, "peer": a.peer, "busy_loops": a.busy,
                   "embed_rounds": a.embed_rounds, "quality": a.quality, "store_format": FORMAT, "vectors": VECTORS},
    }
    bench = Bench(a, work, res)
    t0 = time.perf_counter()
    sys.stderr.write(f"Clarity benchmark ({a.mode}): scratch {work}\n")
    try:
        anyio.run(bench.run)
        if a.embed_rounds:
            sys.stderr.write("embedding cost per text\n")
            res["embedding_cost"] = embedding_cost(a.embed_rounds, Path(a.out))
        if a.quality:
            sys.stderr.write("retrieval quality, float and int8\n")
            res["retrieval_quality"] = retrieval_quality(Path(a.cache).expanduser() / "models")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        res["leftover_processes_killed"] = reap(bench.marker)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["machine"]["loadavg_end"] = loadavg()
    write_outputs(res, Path(a.out))
    return 0 if res["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
