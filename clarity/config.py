"""Settings: where `<home>` is, what `config.json` holds, and the `CLARITY_*` environment variables.

Precedence, highest first: an explicit argument (`--home`), a `CLARITY_*` environment variable,
`<home>/config.json`, the defaults below. `config.json` is written with the defaults on first start.

Environment variables (each overrides the config key named beside it):

| variable                          | config key                      |
|-----------------------------------|---------------------------------|
| CLARITY_HOME                      | (where `<home>` is: see clarity.project) |
| CLARITY_SHARE_WORKTREES           | project.share_worktrees (read from the main checkout's store) |
| CLARITY_EMBEDDING_MODEL           | embedding.model                 |
| CLARITY_EMBEDDING_BATCH_SIZE      | embedding.batch_size            |
| CLARITY_MAX_CONTENT_BYTES         | memory.max_content_bytes        |
| CLARITY_MIN_SIMILARITY            | memory.min_similarity           |
| CLARITY_SIMILAR_THRESHOLD         | memory.similar_threshold        |
| CLARITY_RECENCY_WEIGHT            | memory.recency_weight           |
| CLARITY_IMPORTANCE_WEIGHT         | memory.importance_weight        |
| CLARITY_COORDINATION_MODE         | coordination.mode               |
| CLARITY_CALL_DEADLINE_S           | coordination.call_deadline_s    |
| CLARITY_HEARTBEAT_S               | coordination.heartbeat_s        |
| CLARITY_HUNG_AFTER_S              | coordination.hung_after_s       |
| CLARITY_HANDOFF_QUANTUM_S         | coordination.handoff_quantum_s  |
| CLARITY_MAX_FRAME_BYTES           | coordination.max_frame_bytes    |
| CLARITY_LOG_LEVEL                 | log_level                       |
| CLARITY_ENGINE                    | engine.kind (`edge` or `qdrant`)|
| CLARITY_QDRANT_URL                | engine.url                      |
| CLARITY_QDRANT_API_KEY            | engine.api_key                  |
| CLARITY_QDRANT_COLLECTION         | engine.collection               |
| CLARITY_FLUSH_INTERVAL_S          | engine.flush_interval_s         |
| CLARITY_INDEX_THRESHOLD           | engine.index_threshold          |
| CLARITY_SESSION_ID                | (names this session in what it stores; default: a fresh id) |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clarity.errors import ConfigError
from clarity.layout import Layout
from clarity.platform.files import ensure_private_dir
from clarity.project import choose_home

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingSettings(_Section):
    model: str = DEFAULT_MODEL
    batch_size: int = Field(default=32, ge=1, le=1024)


class MemorySettings(_Section):
    max_content_bytes: int = Field(default=32 * 1024, ge=1, le=8 * 1024 * 1024)
    min_similarity: float = Field(default=0.25, ge=-1.0, le=1.0)
    # store reports `similar_to` for memories of the same type at or above this cosine (docs/bench/retrieval.md)
    similar_threshold: float = Field(default=0.85, ge=0.0, le=1.0)
    # optional ranking by recency and importance (clarity.memory.ranking); 0 = off
    recency_weight: float = Field(default=0.0, ge=0.0, le=0.5)
    importance_weight: float = Field(default=0.0, ge=0.0, le=0.5)
    recency_half_life_days: float = Field(default=30.0, gt=0, le=36500)


class CoordinationSettings(_Section):
    # "naive" exists for benchmarks only: no lease, every call opens the engine, runs, closes, and
    # waits and retries while another process has it open (a "shared client with wait-and-retry").
    mode: Literal["forward", "handoff", "naive"] = "forward"
    call_deadline_s: float = Field(default=30.0, gt=0, le=3600)
    heartbeat_s: float = Field(default=1.0, gt=0, le=60)
    hung_after_s: float = Field(default=10.0, gt=0, le=3600)
    handoff_quantum_s: float = Field(default=0.2, ge=0, le=60)
    max_frame_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # the longest backoff between a call's attempts: a failover (the standby binds the socket within tens of
    # milliseconds of the owner's death) is found by the next attempt within this much
    retry_max_wait_s: float = Field(default=0.05, gt=0, le=10)
    # a lease held while its socket stays unreachable this long: leave a waiter ticket (the owner hands off)
    ticket_after_s: float = Field(default=1.0, ge=0, le=600)
    # an owner found gone while a hot standby stands by: let the standby take the lease for this long
    standby_grace_s: float = Field(default=1.0, ge=0, le=600)
    # how often a session that is not the standby tries to become it (while another process owns the lease)
    standby_poll_s: float = Field(default=0.05, gt=0, le=60)
    # how often the standby asks the kernel to keep the store's files in the page cache
    standby_warm_interval_s: float = Field(default=1.0, gt=0, le=3600)


class EngineSettings(_Section):
    """Which engine holds the memories. `edge` (default): a Qdrant Edge shard in `<home>/qdrant/edge/`,
    one process at a time (the lease). `qdrant`: qdrant-client; with `url` a Qdrant server or cluster
    that every session talks to directly (no lease), without it the legacy local store in
    `<home>/qdrant/`. `flush_interval_s` (Edge): at most this long between a write and its sync to disk
    (power-loss window); 0 = every acknowledgement waits for a group commit. `index_threshold` (Edge):
    after this many points written since the last HNSW index build, a new one runs in the background
    (clarity.engines.edge.build); 0 = never (search stays exact)."""

    kind: Literal["edge", "qdrant"] = "edge"
    url: str | None = None
    api_key: str | None = None
    collection: str = Field(default="memories", min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    flush_interval_s: float = Field(default=1.0, ge=0, le=3600)
    # exact search costs ~3.4 ms at 10k points, ~4.7 ms at 20k, ~10 ms at 100k (scripts/edge_probe.py)
    index_threshold: int = Field(default=20_000, ge=0)
    # the legacy -> Edge migration's child may run this long (None: 10 min + 2 s per MiB of legacy files)
    migrate_deadline_s: float | None = Field(default=None, gt=0)


class ProjectSettings(_Section):
    # read by clarity.project from the MAIN checkout's config.json before `<home>` is known
    share_worktrees: bool = True


class Settings(_Section):
    """Everything configurable. `home` is not stored in config.json; it says where config.json is."""

    home: Path = Field(default=Path("."), exclude=True)
    home_source: str = Field(default="", exclude=True)  # why this home: "--home", "CLARITY_HOME", ...
    embedding: EmbeddingSettings = EmbeddingSettings()
    memory: MemorySettings = MemorySettings()
    coordination: CoordinationSettings = CoordinationSettings()
    engine: EngineSettings = EngineSettings()
    project: ProjectSettings = ProjectSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def layout(self) -> Layout:
        return Layout(self.home)

    @property
    def qdrant_path(self) -> Path:
        return self.layout.qdrant

    @property
    def coordination_dir(self) -> Path:
        return self.layout.coordination.dir

    @property
    def cache_dir(self) -> Path:
        return self.layout.cache

    @property
    def logs_dir(self) -> Path:
        return self.layout.logs

    @property
    def backups_dir(self) -> Path:
        return self.layout.backups


_ENV: dict[str, tuple[str, str]] = {
    "CLARITY_EMBEDDING_MODEL": ("embedding", "model"),
    "CLARITY_EMBEDDING_BATCH_SIZE": ("embedding", "batch_size"),
    "CLARITY_MAX_CONTENT_BYTES": ("memory", "max_content_bytes"),
    "CLARITY_MIN_SIMILARITY": ("memory", "min_similarity"),
    "CLARITY_SIMILAR_THRESHOLD": ("memory", "similar_threshold"),
    "CLARITY_COORDINATION_MODE": ("coordination", "mode"),
    "CLARITY_CALL_DEADLINE_S": ("coordination", "call_deadline_s"),
    "CLARITY_HEARTBEAT_S": ("coordination", "heartbeat_s"),
    "CLARITY_HUNG_AFTER_S": ("coordination", "hung_after_s"),
    "CLARITY_HANDOFF_QUANTUM_S": ("coordination", "handoff_quantum_s"),
    "CLARITY_MAX_FRAME_BYTES": ("coordination", "max_frame_bytes"),
    "CLARITY_LOG_LEVEL": ("", "log_level"),
    "CLARITY_ENGINE": ("engine", "kind"),
    "CLARITY_QDRANT_URL": ("engine", "url"),
    "CLARITY_QDRANT_API_KEY": ("engine", "api_key"),
    "CLARITY_QDRANT_COLLECTION": ("engine", "collection"),
    "CLARITY_FLUSH_INTERVAL_S": ("engine", "flush_interval_s"),
    "CLARITY_INDEX_THRESHOLD": ("engine", "index_threshold"),
    "CLARITY_MIGRATE_DEADLINE_S": ("engine", "migrate_deadline_s"),


    "CLARITY_SHARE_WORKTREES": ("project", "share_worktrees"),
    "CLARITY_RECENCY_WEIGHT": ("memory", "recency_weight"),
    "CLARITY_IMPORTANCE_WEIGHT": ("memory", "importance_weight"),
}


def environment_value(name: str) -> str | None:
    """The process environment's `name` (None when unset or empty). With `Settings`, the one reader
    of the environment: modules that need a variable outside the settings (fault injection, the
    runtime folder, the session id) ask here."""
    value = os.environ.get(name)
    return value if value else None


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--home`, else CLARITY_HOME, else the project's store (see `clarity.project.choose_home`);
    absolute, symlinks followed."""
    return choose_home(explicit).path


def _home_source(explicit: str | os.PathLike[str] | None) -> str:
    """Which store and why, as a sentence (see `clarity.project.choose_home`)."""
    return choose_home(explicit).source


def _describe(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        parts.append(f"{key}: {e['msg']}")
    return f"invalid configuration in {source}: " + "; ".join(parts)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def load_settings(home: str | os.PathLike[str] | None = None, *, create: bool = True) -> Settings:
    """Read settings for `home` (see `resolve_home`); with `create`, make the layout and config.json.

    Raises ConfigError naming the file (or variable) and key when something is malformed.
    """
    home_path = resolve_home(home)
    config_file = Layout(home_path).config_file
    if create:
        make_layout(home_path)
    data: dict[str, Any] = {}
    if config_file.exists():
        data = _read_config_file(config_file)
    try:
        settings = Settings.model_validate({**data, "home": home_path, "home_source": _home_source(home)})
    except ValidationError as e:
        raise ConfigError(_describe(e, str(config_file))) from e
    for var, (section, key) in _ENV.items():
        value = os.environ.get(var)
        if value is None or value == "":
            continue
        target: BaseModel = getattr(settings, section) if section else settings
        try:
            setattr(target, key, value)
        except ValidationError as e:
            raise ConfigError(_describe(e, f"environment variable {var}")) from e
    if create and not config_file.exists():
        _write_defaults(config_file)
    return settings


def make_layout(home: Path) -> None:
    """Create <home> and its folders, mode 0700 (idempotent, safe when several processes race), and
    refuse (UnsafeStore: path, owner, mode, fix) any of them that is a symlink, belongs to another
    user or is writable by group or others. `home` itself was resolved (links followed) before."""
    home.parent.mkdir(parents=True, exist_ok=True)
    for folder, what in Layout(home).private_folders():
        ensure_private_dir(folder, what)


def _write_defaults(config_file: Path) -> None:
    body = orjson.dumps(Settings().model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
    tmp = config_file.with_name(f".config.json.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, body)
    finally:
        os.close(fd)
    try:
        # link-then-unlink: never replaces a config.json another process wrote first
        os.link(tmp, config_file)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
