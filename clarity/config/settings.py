"""The settings: `Settings` and its sections, each field declared with its default, its variable and
what it does (see `clarity.config.fields.setting`).

Precedence, highest first: an explicit argument (`--home`), a `CLARITY_*` environment variable,
`<home>/config.json`, the defaults below. An empty variable counts as unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from clarity.config.environment import FromEnvironment
from clarity.config.fields import setting
from clarity.layout import Layout
from clarity.project import SHARE_VAR

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingSettings(_Section):
    model: str = setting(DEFAULT_MODEL, "CLARITY_EMBEDDING_MODEL",
                         "the embedding model: the default ships with Clarity (works offline); any other "
                         "fastembed model is downloaded where the network allows")
    batch_size: int = setting(32, "CLARITY_EMBEDDING_BATCH_SIZE", "texts per call of the embedding model",
                              ge=1, le=1024)
    precision: Literal["int8", "float"] = setting(
        "int8", "CLARITY_MODEL_PRECISION",
        "the default model's arithmetic: `int8` (quantised activations, about half the CPU per text, vectors "
        "within cosine 0.99 of float) or `float`; stored vectors stay valid either way (docs/bench/int8.md)")


class MemorySettings(_Section):
    max_content_bytes: int = setting(32 * 1024, "CLARITY_MAX_CONTENT_BYTES",
                                     "the largest memory content (and query) accepted, in UTF-8 bytes",
                                     ge=1, le=8 * 1024 * 1024)
    min_similarity: float = setting(0.25, "CLARITY_MIN_SIMILARITY",
                                    "retrieve's floor on the cosine similarity of query and memory (a call's "
                                    "`min_similarity` overrides it)", ge=-1.0, le=1.0)
    similar_threshold: float = setting(0.85, "CLARITY_SIMILAR_THRESHOLD",
                                       "store reports `similar_to` for memories of the same type at or above "
                                       "this cosine (docs/bench/retrieval.md)", ge=0.0, le=1.0)
    recency_weight: float = setting(0.0, "CLARITY_RECENCY_WEIGHT",
                                    "share of retrieve's ranking given to how recent a memory is (0 = off; "
                                    "clarity.memory.ranking)", ge=0.0, le=0.5)
    importance_weight: float = setting(0.0, "CLARITY_IMPORTANCE_WEIGHT",
                                       "share of retrieve's ranking given to a memory's importance (0 = off)",
                                       ge=0.0, le=0.5)
    recency_half_life_days: float = setting(30.0, None, "the age at which recency counts half", gt=0, le=36500)


class CoordinationSettings(_Section):
    mode: Literal["forward", "handoff", "naive"] = setting(
        "forward", "CLARITY_COORDINATION_MODE",
        "`forward`: calls go to the owner's socket; `handoff`: sessions take turns on the lease; `naive` "
        "(benchmarks only): no lease, every call opens the engine, waits and retries while another has it")
    call_deadline_s: float = setting(30.0, "CLARITY_CALL_DEADLINE_S",
                                     "how long one call may take, every wait included, before it fails",
                                     gt=0, le=3600)
    heartbeat_s: float = setting(1.0, "CLARITY_HEARTBEAT_S", "how often the owner records that it is alive",
                                 gt=0, le=60)
    hung_after_s: float = setting(10.0, "CLARITY_HUNG_AFTER_S",
                                  "an owner whose heartbeat is older than this is reported as hung", gt=0, le=3600)
    handoff_quantum_s: float = setting(0.2, "CLARITY_HANDOFF_QUANTUM_S",
                                       "handoff mode: the owner keeps the store at least this long before a "
                                       "waiter gets it", ge=0, le=60)
    max_frame_bytes: int = setting(32 * 1024 * 1024, "CLARITY_MAX_FRAME_BYTES",
                                   "the largest message between sessions (a forwarded call or its answer)",
                                   ge=1024)
    retry_max_wait_s: float = setting(0.05, "CLARITY_RETRY_MAX_WAIT_S",
                                      "the longest backoff between a call's attempts: a failover (the standby "
                                      "binds the socket within milliseconds of the owner's death) is found "
                                      "within this much", gt=0, le=10)
    ticket_after_s: float = setting(1.0, "CLARITY_TICKET_AFTER_S",
                                    "a lease held while its socket stays unreachable this long: the caller "
                                    "leaves a waiter ticket (the owner hands off)", ge=0, le=600)
    standby_grace_s: float = setting(1.0, "CLARITY_STANDBY_GRACE_S",
                                     "an owner found gone while a hot standby stands by: the standby gets "
                                     "this long to take the lease", ge=0, le=600)
    standby_poll_s: float = setting(0.05, "CLARITY_STANDBY_POLL_S",
                                    "how often a session that is not the standby tries to become it (while "
                                    "another process owns the lease)", gt=0, le=60)
    standby_warm_interval_s: float = setting(1.0, "CLARITY_STANDBY_WARM_INTERVAL_S",
                                             "how often the standby asks the kernel to keep the store's files "
                                             "in the page cache", gt=0, le=3600)


class EngineSettings(_Section):
    """Which engine holds the memories. `edge` (default): a Qdrant Edge shard in `<home>/qdrant/edge/`,
    one process at a time (the lease). `qdrant`: qdrant-client; with `url` a Qdrant server or cluster
    that every session talks to directly (no lease), without it the legacy local store in
    `<home>/qdrant/`. `flush_interval_s` (Edge): at most this long between a write and its sync to disk
    (power-loss window); 0 = every acknowledgement waits for a group commit. `index_threshold` (Edge):
    after this many points written since the last HNSW index build, a new one runs in the background
    (clarity.engines.edge.build); 0 = never (search stays exact)."""

    kind: Literal["edge", "qdrant"] = setting(
        "edge", "CLARITY_ENGINE",
        "`edge`: Qdrant Edge, embedded, one process at a time; `qdrant`: qdrant-client, a server with "
        "`engine.url`, else a legacy local store")
    url: str | None = setting(None, "CLARITY_QDRANT_URL",
                              "the Qdrant server (`qdrant` engine) every session talks to directly")
    api_key: str | None = setting(None, "CLARITY_QDRANT_API_KEY", "the Qdrant server's API key")
    collection: str = setting("memories", "CLARITY_QDRANT_COLLECTION",
                              "the collection's name (`qdrant` engine, and a legacy store being migrated)",
                              min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    flush_interval_s: float = setting(1.0, "CLARITY_FLUSH_INTERVAL_S",
                                      "Edge: at most this long between a write and its sync to disk (see "
                                      "Durability); 0 = a disk sync before every answer", ge=0, le=3600)
    # exact search costs ~3.4 ms at 10k points, ~4.7 ms at 20k, ~10 ms at 100k (scripts/edge_probe.py)
    index_threshold: int = setting(20_000, "CLARITY_INDEX_THRESHOLD",
                                   "Edge: memories written since the last vector index build before the owner "
                                   "builds a new one in the background (0 = never: search stays exact)", ge=0)
    migrate_deadline_s: float | None = setting(None, "CLARITY_MIGRATE_DEADLINE_S",
                                               "how long the legacy -> Edge migration's child may run (unset: "
                                               "10 min + 2 s per MiB of legacy files)", gt=0)


class ProjectSettings(_Section):
    share_worktrees: bool = setting(True, SHARE_VAR,
                                    "linked git worktrees share the main checkout's store; read by "
                                    "clarity.project from the MAIN checkout's config.json, before `<home>` "
                                    "is known (see \"Which store\")")


class Settings(FromEnvironment):
    """Everything configurable. `home` is not stored in config.json; it says where config.json is.

    `Settings(**values)` (or `model_validate(values)`): the defaults, then `values` (config.json's
    layer), then the `CLARITY_*` variables over both; `load_settings` is the usual way in."""

    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True)

    home: Path = Field(default=Path("."), exclude=True)
    home_source: str = Field(default="", exclude=True)  # why this home: "--home", "CLARITY_HOME", ...
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    coordination: CoordinationSettings = Field(default_factory=CoordinationSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    project: ProjectSettings = Field(default_factory=ProjectSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", "CLARITY_LOG_LEVEL", "the least severe log record kept (stderr and `<home>/logs/clarity.log`)")

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


class WithoutVariables(Settings):
    """`Settings` from the defaults and the keyword arguments alone: config.json checked on its own,
    and the defaults written into a new one."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
