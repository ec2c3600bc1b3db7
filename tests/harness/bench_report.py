"""The benchmark's outputs: issue 8's table (per engine and size), issue 9's table (against
mcp-server-qdrant, throughput, failover, standby RSS), as results.md, results.png and console tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.harness.stats import ratio

ISSUE8_COLS = ("engine", "memories", "first call (open + model)", "then index build",
               "retrieve p50 during index build", "retrieve p50", "store p50", "list p50 (limit 20)",
               "memory_stats p50", "owner RSS", "failover p50 / max")
BUILD_RETRIEVE_TARGET_MS = 30.0  # issue 20: retrieve p50 at 100k while the index builds after a migration


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 10_000:
        return f"{v / 1000:.1f} s"
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def mib(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} MiB" if v < 1024 else f"{v / 1024:.2f} GiB"


def x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def during_build(res: dict[str, Any], engine: str, size: int) -> dict[str, Any] | None:
    """The owner scenario's retrieves timed while the index built (None: no build ran, or an older run)."""
    for o in res.get("owner", []):
        if o.get("engine") == engine and o.get("size") == size:
            rdb = o.get("retrieve_during_build")
            return rdb if isinstance(rdb, dict) and rdb.get("n") else None
    return None


def issue8_rows(res: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in res["rows"]:
        fo = "-" if r["failover_p50"] is None else f"{ms(r['failover_p50'])} / {ms(r['failover_max'])}"
        wait = r.get("index_wait_s")
        # the qdrant-client engine never builds an index (earlier runs recorded its one memory_stats call)
        built = f"{wait:.0f} s" if wait is not None and wait >= 1 and r["engine"] != "qdrant" else "-"
        rdb = during_build(res, r["engine"], r["size"])
        out.append([r["engine"], f"{r['size']:,}", ms(r["first_call_ms"]), built,
                    ms(rdb["p50"]) if rdb else "-", ms(r["retrieve_p50"]),
                    ms(r["store_p50"]), ms(r["list_p50"]), ms(r["stats_p50"]), mib(r["owner_rss_mib"]), fo])
    return out


def issue9_rows(res: dict[str, Any]) -> list[list[str]]:
    """[engine, row, clarity, baseline, ratio, target]."""
    out = []
    for p in res["peer"]:
        for op, name in (("store", "store p50"), ("retrieve", "retrieve p50")):
            c, b = p[f"clarity_{op}"]["p50"], p[f"peer_{op}"]["p50"]
            out.append([p["engine"], f"{name}, one session, vs mcp-server-qdrant {p['peer_version']}",
                        ms(c), ms(b), x(ratio(c, b)), "<= 0.6x"])
    for t in res["throughput"]:
        out.append([t["engine"], f"{t['many']['n']} sessions' aggregate store throughput vs one session's",
                    f"{t['many']['stores_per_s']}/s", f"{t['one']['stores_per_s']}/s",
                    x(ratio(t["many"]["stores_per_s"], t["one"]["stores_per_s"])), ">= 2x"])
    for e in sorted({r["engine"] for r in res["rows"]}):
        rows = [r for r in res["rows"] if r["engine"] == e and r["failover_p50"] is not None]
        if rows:
            big = max(rows, key=lambda r: r["size"])
            out.append([e, f"failover at {big['size']:,} memories (p50 / max of {big['failover_n']})",
                        f"{ms(big['failover_p50'])} / {ms(big['failover_max'])}", "-", "-", "<= 500 ms"])
        rss = [r["non_owner_rss_mib"] for r in res["rows"] if r["engine"] == e and r["non_owner_rss_mib"]]
        if rss:
            out.append([e, "RSS of a plain non-owner session", mib(max(rss)), "-", "-", "<= 80 MiB"])
        sb = [r["standby_rss_mib"] for r in res["rows"] if r["engine"] == e and r.get("standby_rss_mib")]
        if sb:
            out.append([e, "RSS of the hot standby (model loaded)", mib(max(sb)), "-", "-", "<= 250 MiB"])
    return out


STAGES = ("mcp_parse", "mcp_reply", "wire", "queue_wait", "embed", "engine", "execute")
STAGE_COLS = ["engine", "sessions", "stores/s", "CPU ms/store owner / others / client",
              "texts per embed call", *[f"{s} p50" for s in STAGES]]


def stage_rows(res: dict[str, Any]) -> list[list[str]]:
    """Per throughput run: the owner's per-stage p50 (ms) and the CPU each role spent per store."""
    out = []
    for t in res.get("throughput", []):
        for key in ("one", "many"):
            r = t.get(key) or {}
            st, cpu = r.get("owner_stages") or {}, r.get("cpu_ms_per_store") or {}
            c = st.get("counters", {})
            per_call = f"{c['embedded_texts'] / c['embed_calls']:.1f}" if c.get("embed_calls") else "-"
            cpu_txt = " / ".join(f"{cpu[k]:.1f}" for k in ("owner", "other_sessions", "client") if k in cpu) or "-"
            out.append([t["engine"], str(r.get("n", "-")), f"{r.get('stores_per_s') or 0:.1f}", cpu_txt, per_call,
                        *[f"{st[s]['p50_ms']:.2f}" if s in st else "-" for s in STAGES]])
    return out


def build_window_lines(res: dict[str, Any]) -> list[str]:
    """Issue 20's row for the summary: retrieve p50 while the index builds after a migration, for the
    migrated engine at its largest size, against the target (nothing when the run has no migrated row)."""
    rows = [r for r in res["rows"] if r["engine"] == "migrated"]
    if not rows:
        return []
    big = max(rows, key=lambda r: r["size"])
    rdb = during_build(res, "migrated", big["size"])
    if rdb is None:
        why = "no index build ran" if big.get("index_wait_s") is None else "not measured by this run"
        measured, verdict = f"- ({why})", "-"
    else:
        p90 = f", p90 {ms(rdb['p90'])}" if rdb.get("p90") is not None else ""
        measured = f"{ms(rdb['p50'])}{p90}, n={rdb['n']}; build {big.get('index_wait_s')} s"
        verdict = "met" if rdb["p50"] <= BUILD_RETRIEVE_TARGET_MS else "not met"
    return ["| issue 20 row | measured | target | |", "|---|---:|---:|---|",
            f"| retrieve p50 at {big['size']:,} memories while the index builds after a migration "
            f"(migrated; through MCP, one session, a retrieve every few tenths of a second) | {measured} | "
            f"<= {BUILD_RETRIEVE_TARGET_MS:.0f} ms | {verdict} |", ""]


def _md_table(cols: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(cols))) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def write_markdown(res: dict[str, Any], path: Path) -> None:
    mi = res["machine"]
    dirty = " (clarity/ modified)" if mi["clarity_dirty"] else ""
    lines = [f"Measured {mi['date'][:10]} on {mi['cpu_model']}, {mi['nproc']} cores, {mi['mem_total_gib']} GiB, "
             f"Python {mi['python']}, commit `{mi['git_commit'][:10]}`{dirty};"
             f" one run of `python scripts/bench.py {res['config']['mode_flag']}` ({res['wall_s'] / 60:.1f} min), "
             f"load average {' '.join(mi['loadavg_start'])} at the start. Every call goes through MCP to a real "
             "`clarity serve` (Python MCP client). Stores are built straight through the engine: "
             f"{res['config']['vectors']}. A shared machine: expect noise.", "",
             "Per engine and store size (issue 8):", ""]
    lines += _md_table(ISSUE8_COLS, issue8_rows(res))
    lines += ["", "Sessions and the peer (issue 9); the peer runs from its own virtualenv, offline, same model "
              "file, same client, same run, fresh empty stores for both:", ""]
    lines += _md_table(["engine", "row", "clarity", "baseline", "ratio", "target"], issue9_rows(res))
    if res.get("throughput"):
        lines += ["", "Where a store's time and CPU go in the throughput runs (the owner's per-stage p50 in ms, "
                  "from coordination_status; CPU per acknowledged store by process):", ""]
        lines += _md_table(STAGE_COLS, stage_rows(res))
    if res.get("engines_unavailable"):
        lines += [""] + [f"Engine `{e}` not measured: {why}." for e, why in res["engines_unavailable"].items()]
    errs = [f"{r['engine']} {r['size']:,}: {r['errors']} failed calls" for r in res["rows"] if r["errors"]]
    if errs:
        lines += ["", "Failed calls: " + "; ".join(errs) + " (see results.json)."]
    path.write_text("\n".join(lines) + "\n")


def write_chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    labels = [f"{r['engine']}\n{r['size']:,}" for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5))
    series = (("retrieve_p50", "retrieve p50"), ("store_p50", "store p50"), ("list_p50", "list p50"),
              ("stats_p50", "memory_stats p50"))
    w = 0.8 / len(series)
    for k, (key, name) in enumerate(series):
        a.bar([i + (k - 1.5) * w for i in range(len(rows))], [r[key] or 0 for r in rows], w, label=name)
    b_series = (("first_call_ms", "first call of a new owner"), ("failover_p50", "failover p50"))
    for k, (key, name) in enumerate(b_series):
        b.bar([i + (k - 0.5) * 0.4 for i in range(len(rows))], [r[key] or 0 for r in rows], 0.4, label=name)
    for ax, title in ((a, "latency per MCP call (ms, log)"), (b, "new owner and failover (ms, log)")):
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", which="both", alpha=0.25)
        ax.legend(fontsize=8)
    mi = res["machine"]
    fig.suptitle(f"Clarity benchmark {mi['date'][:10]}, {mi['nproc']} cores, commit {mi['git_commit'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_tables(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=190)
    t = Table(title="Per engine and store size (through MCP)")
    for c in ISSUE8_COLS:
        t.add_column(c, justify="left" if c == "engine" else "right")
    for r in issue8_rows(res):
        t.add_row(*r)
    con.print(t)
    t9 = Table(title="Sessions and the peer")
    for c in ("engine", "row", "clarity", "baseline", "ratio", "target"):
        t9.add_column(c, justify="left" if c in ("engine", "row") else "right")
    for r in issue9_rows(res):
        t9.add_row(*r)
    con.print(t9)
    for e, why in (res.get("engines_unavailable") or {}).items():
        con.print(f"engine {e} not measured: {why}")
