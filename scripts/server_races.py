"""Server mode's race table (issue 19): N rounds of each race through real `clarity serve` sessions on one
Qdrant server (a stand-in process, or QDRANT_SERVER_URL), then a Markdown table. Not CI (slow); the test
tests/test_server_races.py runs two rounds.

    python scripts/server_races.py --rounds 5 [--sessions 4] [--strict]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.qdrant_standin import server  # noqa: E402
from tests.harness.server_races import dedup_round, supersede_round, update_round  # noqa: E402
from tests.harness.sessions import open_sessions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--strict", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clarity-races-"))
    rows: dict[str, list[object]] = {"dedup": [], "supersede": [], "update": []}
    with server(tmp / "qdrant", api_key="races-key", strict=a.strict) as (url, key, _s):
        env = {"CLARITY_ENGINE": "qdrant", "CLARITY_QDRANT_URL": url, "CLARITY_QDRANT_API_KEY": key or "",
               "CLARITY_QDRANT_COLLECTION": f"clarity_races_{uuid.uuid4().hex[:8]}"}

        async def run() -> None:
            async with open_sessions(tmp / "home", a.sessions, env=env) as sessions:
                for _ in range(a.rounds):
                    rows["dedup"].append(await dedup_round(sessions))
                    rows["supersede"].append(await supersede_round(sessions))
                    rows["update"].append(await update_round(sessions))

        anyio.run(run)
    ok_d = sum(1 for r in rows["dedup"] if r["copies"] == 1)  # type: ignore[index]
    ok_s = sum(1 for r in rows["supersede"] if r["succeeded"] == 1 and r["refused"] == 1  # type: ignore[index]
               and r["chain_ok"] and r["loser_left"] == 0)  # type: ignore[index]
    ok_u = sum(1 for r in rows["update"] if r["lost"] == 0)  # type: ignore[index]
    print(f"| check ({a.sessions} sessions, server mode, {'strict ' if a.strict else ''}stand-in) | result |")
    print("|---|---|")
    print(f"| same content stored by {a.sessions} sessions at once | 1 copy in {ok_d} of {a.rounds} rounds: "
          f"{[r['copies'] for r in rows['dedup']]} copies |")  # type: ignore[index]
    print(f"| two sessions supersede one memory | one refused in {ok_s} of {a.rounds} rounds |")
    print(f"| two sessions update different fields | 0 lost in {ok_u} of {a.rounds} rounds: "
          f"{[r['lost'] for r in rows['update']]} |")  # type: ignore[index]
    for k, v in rows.items():
        print(k, v, file=sys.stderr)


if __name__ == "__main__":
    main()
