"""Test and benchmark harness shared by tests/, scripts/bench.py and scripts/stress.py.

One place for what they all need, so their figures are comparable:

- `stats`: one percentile definition and one summary (n, p50, p99, mean, max).
- `processes`: /proc readers (RSS, state, a process's session id), signalling by pid, finding the lease
  owner from a status dict, reaping leftover `clarity serve` processes of a run.
- `sessions`: N real `clarity serve` sessions over MCP at once; a killed session closes quietly.
- `scripted`: a `python -c` child driven line by line over pipes (a lock, lease or ticket holder); stopping
  it never leaves a pipe open, and a child that exits early fails the read with its exit code.
- `sockets`: a Unix listener that never accepts, its backlog full (an owner that stopped accepting).
- `ledger`: append-only JSONL acknowledgement logs and the one exactly-once verifier.
- `progress`: rich progress bars on stderr (plain lines when stderr is not a terminal).
- `corpus`, `stores`, `peer`, `machine`: benchmark inputs (texts, prebuilt stores, the
  mcp-server-qdrant peer, machine facts).

Nothing here is imported by `clarity serve`; importing `tests.harness` imports no engine or model.
"""
