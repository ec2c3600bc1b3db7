"""`python -m tests.harness.qdrant_standin --port P --path DIR [--api-key K] [--strict] [--delay-ms N]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from tests.harness.qdrant_standin.app import StandIn, build_app


def main() -> None:
    ap = argparse.ArgumentParser(prog="qdrant-standin")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", type=Path, required=True)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    state = StandIn(a.path, a.api_key, a.strict, a.delay_ms)
    uvicorn.run(build_app(state), host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
