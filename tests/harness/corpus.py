"""Realistic, varied memory contents for benchmarks: sentences and queries from word lists, fixed seed.

`Corpus(seed).sentence()` never repeats within one Corpus (unique contents, so the store's dedup never
merges two of them); `query()` may repeat. Deterministic for a seed.
"""

from __future__ import annotations

import random

PEOPLE = ["Alice", "Bob", "Priya", "Chen", "Fatima", "Lukas", "Mateo", "Sofia", "Kenji", "Amara",
          "Olga", "Diego", "Hannah", "Ravi", "Zoe", "Tomas"]
COMPONENTS = ["auth service", "billing worker", "search index", "payment gateway", "session cache",
              "rate limiter", "email queue", "CSV exporter", "image resizer", "feature flag client",
              "GraphQL resolver", "retry middleware", "audit log", "config loader", "webhook dispatcher",
              "migration runner", "metrics exporter", "PDF renderer", "job scheduler", "websocket hub",
              "upload handler", "notification service", "inventory sync", "tax calculator"]
MODULES = ["api/handlers", "core/models", "workers/billing", "infra/terraform", "web/components",
           "lib/http", "db/migrations", "services/search", "cli/commands", "tests/integration",
           "pkg/cache", "internal/queue", "frontend/store", "scripts/deploy", "shared/utils"]
VERBS = ["rewrite", "split", "cache", "deprecate", "rename", "parallelize", "inline", "vendor",
         "pin", "shard", "debounce", "batch", "memoize", "instrument", "feature-flag", "document"]
ADJS = ["legacy", "flaky", "slow", "new", "async", "experimental", "shared", "internal", "public",
        "nightly", "critical", "stateless", "read-only", "multi-tenant"]
REASONS = ["p99 latency doubled under load", "the vendor SDK leaks file handles",
           "two teams kept editing the same file", "the old schema cannot store time zones",
           "it blocked the release train twice", "customers hit timeouts on large accounts",
           "the test suite took forty minutes", "memory grew without bound in staging",
           "the API contract changed in version 3", "on-call got paged every weekend",
           "it silently dropped retries", "cold starts exceeded two seconds",
           "security review flagged plaintext tokens", "the cache hit rate fell below half"]
TOOLS = ["pytest", "ruff", "mypy", "Docker Compose", "Terraform", "Postgres", "Redis", "SQLite",
         "Kafka", "Celery", "httpx", "pydantic", "uv", "Poetry", "GitHub Actions", "Grafana",
         "Sentry", "OpenTelemetry", "Playwright", "esbuild"]
TASKS = ["local development", "integration tests", "schema migrations", "load testing", "CI caching",
         "error tracking", "feature previews", "background jobs", "dependency updates", "code review"]
FAILS = ["times out", "returns stale data", "crashes with a KeyError", "double-charges", "deadlocks",
         "loses the last message", "logs secrets", "spins at full CPU", "rejects valid input"]
CONDITIONS = ["the queue has more than ten thousand items", "two requests share an idempotency key",
              "the clock jumps backwards", "the upstream returns a 429", "a tenant has no region set",
              "the payload is larger than one megabyte", "the connection pool is exhausted",
              "daylight saving time starts", "a user has an emoji in their name"]
FIXES = ["restart the worker with a smaller batch size", "set the retry budget to three",
         "clear the cache key by hand", "bump the pool size to forty", "pin the client to 2.4",
         "run the migration in two steps", "turn on the circuit breaker", "disable HTTP/2",
         "drain the queue before deploying"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the next sprint", "the quarter end"]
EVENTS = ["release freeze", "security audit", "launch", "demo", "migration window", "load test"]

TEMPLATES = [
    "We decided to {verb} the {adj} {component} in {module} because {reason} (see PR #{n}).",
    "{person} prefers {tool} over {tool2} for {task}; agreed in the review of PR #{n}.",
    "The {component} {fails} when {condition}; the workaround is to {fix} (incident {n}).",
    "Remember that {module} depends on {tool} {major}.{minor}, so upgrading it breaks the {component}.",
    "TODO: {verb} the {adj} {component} before the {event} on {day}, owner {person}, ticket {n}.",
    "Fact: the {component} is owned by {person}'s team and deploys from {module} via {tool} (run {n}).",
    "Decision {n}: keep the {adj} {component} but {verb} it, since {reason}.",
    "Note from {person}: when {condition}, the {component} {fails}; we should {fix}.",
    "Preference: use {tool} for {task}, never {tool2}; {person} measured it on build {n}.",
    "Bug {n} in {module}: the {adj} {component} {fails} if {condition}.",
]
QUERIES = [
    "why did we {verb} the {component}?",
    "what does {person} prefer for {task}",
    "{component} {fails} workaround",
    "which tool do we use for {task}",
    "who owns the {component}",
    "known problems when {condition}",
    "decisions about the {adj} {component} in {module}",
    "what breaks if we upgrade {tool}",
]


def _fill(rng: random.Random, template: str) -> str:
    tool, tool2 = rng.sample(TOOLS, 2)
    return template.format(
        person=rng.choice(PEOPLE), component=rng.choice(COMPONENTS), module=rng.choice(MODULES),
        verb=rng.choice(VERBS), adj=rng.choice(ADJS), reason=rng.choice(REASONS), tool=tool, tool2=tool2,
        task=rng.choice(TASKS), fails=rng.choice(FAILS), condition=rng.choice(CONDITIONS),
        fix=rng.choice(FIXES), day=rng.choice(DAYS), event=rng.choice(EVENTS), n=rng.randint(100, 99999),
        major=rng.randint(1, 9), minor=rng.randint(0, 30))


class Corpus:
    """Unique sentences (store contents) and queries, deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: set[str] = set()

    def sentence(self) -> str:
        for _ in range(1000):
            s = _fill(self.rng, self.rng.choice(TEMPLATES))
            if s not in self.seen:
                self.seen.add(s)
                return s
        raise RuntimeError("could not make a unique sentence")

    def query(self) -> str:
        """A query not asked before by this corpus (a repeated query would be answered from a session's
        cache of query vectors: a benchmark must pay for each query's embedding, as the peer does); after
        1,000 tries at a new one, a drawn one with a number added."""
        for _ in range(1000):
            q = _fill(self.rng, self.rng.choice(QUERIES))
            if q not in self.seen:
                self.seen.add(q)
                return q
        q = f"{_fill(self.rng, self.rng.choice(QUERIES))} {self.rng.randint(0, 10**9)}"
        self.seen.add(q)
        return q
