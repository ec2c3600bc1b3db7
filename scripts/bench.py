#!/usr/bin/env python
"""Clarity benchmark through MCP, with real `clarity serve` processes, per engine and store size.

For every engine (`--engines`, chosen by the CLARITY_ENGINE variable: `edge` is the default engine,
`qdrant` the qdrant-client local store) and every store size (`--sizes`), on a copy of a store built
straight through the engine (`tests.harness.stores`, cached under `--cache`):
  first call of a new owner (engine open + model load), store / retrieve / list_memories (limit 20) /
  memory_stats p50, owner RSS, RSS of a non-owner session, failover (owner SIGKILLed -> next successful
  call of another session).
Per engine, at the smallest size: N sessions' aggregate store throughput against one session's, and
one session against mcp-server-qdrant 0.8.1 (run offline from its own virtualenv under `--cache`; same
model file, same Python MCP client, fresh empty stores, calls interleaved).

    python scripts/bench.py --smoke      # seconds to a minute: 200 memories, no peer (checks the harness)
    python scripts/bench.py --quick      # about a minute or two: 1k memories, peer included
    python scripts/bench.py              # full: 1k, 10k, 100k memories (the first build of 100k is slow)

Writes OUT/results.json (every raw figure and the machine), OUT/results.md and OUT/results.png (default
OUT: docs/bench) and prints the tables. Progress goes to stderr. Every server this run starts carries a
run marker and is killed at the end if still alive.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
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
              "stores": 3, "peer": False},
    "quick": {"sizes": [1000], "pairs": 10, "reads": 3, "failovers": 2, "failover_n": 3, "sessions": 8,
              "stores": 4, "peer": True},
    "full": {"sizes": [1000, 10000, 100000], "pairs": 30, "reads": 5, "failovers": 5, "failover_n": 3,
             "sessions": 8, "stores": 10, "peer": True},
}
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
            d, logs, marker = self.place(f"{engine}-peer")
            python = ensure_peer_venv(Path(a.cache))
            p = await sc.peer_scenario(d / "home", python, d / "peer", env, logs, marker, a.pairs, seed=99)
            self.res["peer"].append({"engine": engine, "peer_version": PEER_VERSION, **p})

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
    a.sizes = sorted(set(a.sizes))
    return a


def write_outputs(res: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    report.write_markdown(res, out / "results.md")
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
                   "stores_per_session": a.stores, "peer": a.peer, "store_format": FORMAT, "vectors": VECTORS},
    }
    bench = Bench(a, work, res)
    t0 = time.perf_counter()
    sys.stderr.write(f"Clarity benchmark ({a.mode}): scratch {work}\n")
    try:
        anyio.run(bench.run)
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
