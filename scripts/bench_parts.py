"""Run only some of the benchmark's session scenarios, small, and print their figures as one JSON line:

    python scripts/bench_parts.py --parts peer,tp1,tp8 --pairs 25 --stores 10

`peer`: one Clarity session against mcp-server-qdrant (`bench_scenarios.peer_scenario`, the peer's
virtualenv made under `--cache` as scripts/bench.py makes it); `tpN`: N sessions storing at once on a
copy of the 1k Edge template store (`throughput_scenario`), with the owner's per-stage timings and
the CPU per store by process. For comparing two checkouts side by side under the same conditions
(alternate the runs: a shared machine drifts); scripts/bench.py stays the full report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.harness

from tests.harness import bench_scenarios as sc  # noqa: E402
from tests.harness.peer import ensure_peer_venv  # noqa: E402
from tests.harness.processes import reap  # noqa: E402
from tests.harness.stores import copy_store, template_store  # noqa: E402

ENV = {"CLARITY_ENGINE": "edge", "CLARITY_COORDINATION_MODE": "forward"}


async def run(parts: list[str], pairs: int, stores: int, cache: Path, marker: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-parts-"))
    for k, part in enumerate(parts):
        d = work / f"{k}-{part}"
        (d / "logs").mkdir(parents=True)
        if part == "peer":
            r = await sc.peer_scenario(d / "home", ensure_peer_venv(cache), d / "peer", ENV, d / "logs",
                                       f"{marker}{k}-", pairs, seed=99)
            out["peer"] = {key: r[key] for key in ("clarity_store", "clarity_retrieve", "peer_store",
                                                   "peer_retrieve", "error_count")}
            for what in ("store", "retrieve"):
                out[f"ratio_{what}"] = round(r[f"clarity_{what}"]["p50"] / r[f"peer_{what}"]["p50"], 3)
        elif part.startswith("tp") and part[2:].isdigit():
            tpl, _info = template_store(cache, 1000, "edge")
            n = int(part[2:])
            out[part] = await sc.throughput_scenario(copy_store(tpl, d / "home"), ENV, d / "logs", f"{marker}{k}-",
                                                     n, stores, seed=10 + n)
        else:
            raise SystemExit(f"unknown part {part!r}: peer or tpN")
    tps = sorted((int(p[2:]), p) for p in out if p.startswith("tp"))
    if len(tps) >= 2 and out[tps[0][1]]["stores_per_s"]:
        out["throughput_ratio"] = round(out[tps[-1][1]]["stores_per_s"] / out[tps[0][1]]["stores_per_s"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="peer,tp1,tp8", help="comma-separated: peer, tp1, tp8, ...")
    p.add_argument("--pairs", type=int, default=25, help="store+retrieve pairs of the peer row")
    p.add_argument("--stores", type=int, default=10, help="stores per session in the tpN rows")
    p.add_argument("--cache", default=os.environ.get("CLARITY_BENCH_CACHE",
                                                     str(Path.home() / ".cache" / "clarity-bench")))
    a = p.parse_args()
    marker = f"bench-parts-{os.getpid()}-"
    try:
        out = anyio.run(run, a.parts.split(","), a.pairs, a.stores, Path(a.cache), marker)
    finally:
        reap(marker)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
