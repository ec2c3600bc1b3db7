"""Settings: where `<home>` is, what `config.json` holds, and the environment variables.

Precedence, highest first: an explicit argument (`--home`), a `CLARITY_*` environment variable,
`<home>/config.json`, the defaults below. `config.json` is written with the defaults on first start.
An empty variable counts as unset.

Each variable is declared once, on what it sets: a settings field names its variable with
`setting(default, "CLARITY_...", "what it does")`; the few variables that are not settings (the session
id, the model cache, ...) are the fields of `Environment`. Nothing else lists them: `_Variables` reads
them for pydantic-settings, and `variables_table()` renders README.md's table of every variable from the
same declarations (`python -m clarity.config` prints it; tests/test_config.py checks the README's copy).

This module is the one reader of the process environment: other modules ask `environment_value`,
`session_id`, `model_cache_dir`, `xdg_runtime_dir` or `environment` instead of reading `os.environ`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from clarity import __version__
from clarity.errors import ConfigError
from clarity.layout import Layout
from clarity.platform.files import ensure_private_dir
from clarity.project import HOME_VAR, PROJECT_DIR_VAR, SHARE_VAR, choose_home

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_VAR_KEY = "env"  # the key of a field's json_schema_extra that names its environment variable


def setting(default: Any, var: str | None, doc: str, **limits: Any) -> Any:
    """A field that can be set: its `default`, the environment variable `var` that overrides it (None:
    config.json only), `doc` (what it does; README's table shows it) and pydantic's constraints
    (`ge`, `le`, `pattern`, ...)."""
    return Field(default=default, description=doc, json_schema_extra={_VAR_KEY: var} if var else None, **limits)


def _var_of(field: FieldInfo) -> str | None:
    """The environment variable a field declares (see `setting`), or None."""
    extra = field.json_schema_extra
    var = extra.get(_VAR_KEY) if isinstance(extra, dict) else None
    return var if isinstance(var, str) else None


def _section_of(field: FieldInfo) -> type[BaseModel] | None:
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every leaf field of `model` with its path (`("memory", "min_similarity")`), in declaration order."""
    for name, field in model.model_fields.items():
        section = _section_of(field)
        if section is not None:
            yield from _fields(section, (*prefix, name))
        else:
            yield (*prefix, name), field


def _var_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> str | None:
    """The variable declared by the field at `loc` (a validation error's location), or None."""
    for path, field in _fields(model):
        if tuple(str(p) for p in loc[:len(path)]) == path:
            return _var_of(field)
    return None


def environment_value(name: str) -> str | None:
    """The process environment's `name` (None when unset or empty). The one reader of the environment:
    settings (`_Variables`) and everything outside them (fault injection, the runtime folder, the
    session id) come through here."""
    value = os.environ.get(name)
    return value if value else None


def environment() -> dict[str, str]:
    """A copy of the whole process environment: for `clarity.project` (which must not import this
    module, so it is handed the variables it reads) and for what a child process inherits
    (`clarity.session_client.server_params`)."""
    return dict(os.environ)


class _Variables(PydanticBaseSettingsSource):
    """The pydantic-settings source of the environment: each field's declared variable (see `setting`),
    nested under its section; an unset or empty variable is left out, so what lies below shows."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        var = _var_of(field)
        return (environment_value(var) if var else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, field in _fields(self.settings_cls):
            var = _var_of(field)
            value = environment_value(var) if var else None
            if value is None:
                continue
            target = out
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return out


class _FromEnvironment(BaseSettings):
    """pydantic-settings with one source of the environment, `_Variables`, above the keyword arguments
    (for `Settings` those are config.json's values): no other variable, no .env file, no secrets
    folder is read."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return _Variables(settings_cls), init_settings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingSettings(_Section):
    model: str = setting(DEFAULT_MODEL, "CLARITY_EMBEDDING_MODEL",
                         "the embedding model: the default ships with Clarity (works offline); any other "
                         "fastembed model is downloaded where the network allows")
    batch_size: int = setting(32, "CLARITY_EMBEDDING_BATCH_SIZE", "texts per call of the embedding model",
                              ge=1, le=1024)


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


class Settings(_FromEnvironment):
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


class _WithoutVariables(Settings):
    """`Settings` from the defaults and the keyword arguments alone: config.json checked on its own,
    and the defaults written into a new one."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class Environment(_FromEnvironment):
    """The variables that are not settings: read from the environment only (never config.json), each
    declared here with what it does. Read through the functions below; `clarity.project` gets
    CLARITY_HOME and CLAUDE_PROJECT_DIR in the mapping `environment()` returns."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    home: Path | None = setting(None, HOME_VAR,
                                "where `<home>` is: below `--home`, above the project's store (see \"Which "
                                "store\")")
    project_dir: Path | None = setting(None, PROJECT_DIR_VAR,
                                       "the project directory (Claude Code sets it; unset: the current "
                                       "directory): `<home>` follows its project (see \"Which store\")")
    session_id: str | None = setting(None, "CLARITY_SESSION_ID",
                                     "names the session in what it stores (unset: pid and a random suffix)")
    model_cache: Path | None = setting(None, "CLARITY_MODEL_CACHE",
                                       "the folder of the model files and their optimised copy (about 90 MB), "
                                       "one per user, shared by every project and session; unset: "
                                       "`$XDG_CACHE_HOME/clarity`")
    cache_home: Path | None = setting(None, "XDG_CACHE_HOME",
                                      "the user's cache folder (unset: `~/Library/Caches` where that folder "
                                      "exists, as on macOS, else `~/.cache`): the model cache is its `clarity`")
    runtime_dir: Path | None = setting(None, "XDG_RUNTIME_DIR",
                                       "sockets whose path in `<home>` is too long go to `$XDG_RUNTIME_DIR/"
                                       "clarity` (unset: `<tmp>/clarity-<uid>`)")


def session_id() -> str | None:
    """CLARITY_SESSION_ID: the name this session gives itself in what it stores (None: make one)."""
    return Environment().session_id


def model_cache_dir() -> Path | None:
    """The folder of the embedding model's files and their optimised copy, one per user (never in a
    project): CLARITY_MODEL_CACHE, else `clarity` in the user's cache folder: `$XDG_CACHE_HOME` when it
    is an absolute path, else `~/Library/Caches` where that folder exists (macOS), else `~/.cache`.
    None when no user folder can be named (no home directory): the caller then uses the store's own."""
    env = Environment()
    if env.model_cache is not None:
        return env.model_cache
    if env.cache_home is not None and env.cache_home.is_absolute():
        return env.cache_home / "clarity"
    try:
        user_home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no password entry
        return None
    mac = user_home / "Library" / "Caches"
    return (mac if mac.is_dir() else user_home / ".cache") / "clarity"


def xdg_runtime_dir() -> Path | None:
    """XDG_RUNTIME_DIR: the user's runtime folder for sockets (None: unset)."""
    return Environment().runtime_dir


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--home`, else CLARITY_HOME, else the project's store (see `clarity.project.choose_home`);
    absolute, symlinks followed."""
    return choose_home(explicit, env=environment()).path


def _describe(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        parts.append(f"{key}: {e['msg']}")
    return f"invalid configuration in {source}: " + "; ".join(parts)


def _describe_layers(err: ValidationError, config_file: Path) -> str:
    """`err` (config.json's values with the variables over them) as messages naming, for each key, the
    variable that set it, or else the file."""
    by_source: dict[str, list[str]] = {}
    for e in err.errors():
        var = _var_at(Settings, e["loc"])
        where = f"environment variable {var}" if var and environment_value(var) else str(config_file)
        by_source.setdefault(where, []).append(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
    return "; ".join(f"invalid configuration in {where}: " + "; ".join(parts) for where, parts in by_source.items())


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _known_keys(data: dict[str, Any], model: type[BaseModel], source: Path, prefix: str = "") -> dict[str, Any]:
    """`data` without the keys `model` does not declare, each named in a warning: a config.json written by
    a newer Clarity (more settings) must not stop an older one from starting on the same store. A
    misspelt key is ignored the same way, with the same warning naming it."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None or field.exclude:
            logging.getLogger(__name__).warning(
                "%s: ignoring %s%s, which this Clarity (%s) does not know (a newer version's setting, or a typo)",
                source, prefix, key, __version__)
            continue
        section = _section_of(field)
        out[key] = (_known_keys(value, section, source, f"{prefix}{key}.")
                    if section is not None and isinstance(value, dict) else value)
    return out


def load_settings(home: str | os.PathLike[str] | None = None, *, create: bool = True) -> Settings:
    """Read settings for `home` (see `resolve_home`); with `create`, make the layout and config.json.
    Without it nothing is created (a home that does not exist yet reads as the defaults and the
    variables): read-only commands use that on a project with no store.

    Raises ConfigError naming the file (or variable) and key when something is malformed. config.json
    is checked on its own first, so a mistake in it is reported even where a variable overrides the key.
    """
    choice = choose_home(home, env=environment())
    config_file = Layout(choice.path).config_file
    _refuse_non_folder(choice.path)
    if create:
        make_layout(choice.path)
    data: dict[str, Any] = {}
    if config_file.is_file():
        data = _known_keys(_read_config_file(config_file), Settings, config_file)
    try:
        _WithoutVariables.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, str(config_file))) from e
    try:
        settings = Settings(**{**data, "home": choice.path, "home_source": choice.source})
    except ValidationError as e:
        raise ConfigError(_describe_layers(e, config_file)) from e
    if create and not config_file.exists():
        try:
            _write_defaults(config_file)
        except OSError as e:
            raise ConfigError(f"cannot write {config_file}: {e.strerror or e}; choose a writable folder with "
                              "--home DIR or CLARITY_HOME") from None
    return settings


GITIGNORE = b"# Clarity's store: git ignores this whole folder\n*\n"


def _refuse_non_folder(home: Path) -> None:
    """ConfigError when `home` exists and is not a folder (a file given as --home)."""
    if home.exists() and not home.is_dir():
        raise ConfigError(f"the store folder {home} is a file, not a folder: give --home (or CLARITY_HOME) a "
                          "folder; it is made if missing")


def make_layout(home: Path) -> None:
    """Create <home> and its folders, mode 0700 (idempotent, safe when several processes race), and
    refuse (UnsafeStore: path, owner, mode, fix) any of them that is a symlink, belongs to another
    user or is writable by group or others. `home` itself was resolved (links followed) before.
    A folder that cannot be made (read-only or missing parent, a file in the way) is a ConfigError in
    one sentence naming the path and the fix. A new home gets `.gitignore` (`*`), so a store inside a
    repository never shows in `git status`; an existing home without one gets it too (best effort)."""
    _refuse_non_folder(home)
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        for folder, what in Layout(home).private_folders():
            ensure_private_dir(folder, what)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(home) else ""
        raise ConfigError(f"cannot create the store folder {home}: {e.strerror or e}{where}; choose a "
                          "writable folder with --home DIR or CLARITY_HOME") from None
    _write_gitignore(Layout(home).gitignore)


def _write_gitignore(path: Path) -> None:
    """`path` with GITIGNORE, unless it exists (never replaces a user's own). Best effort: a home that
    cannot take it reports its real problem on its next write."""
    if path.exists():
        return
    tmp = path.with_name(f".gitignore.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, GITIGNORE)
        finally:
            os.close(fd)
        os.link(tmp, path)  # complete or absent; never replaces one another process wrote first
    except OSError:
        pass
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def _write_defaults(config_file: Path) -> None:
    body = orjson.dumps(_WithoutVariables().model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
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


def _shown(default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def variables_table() -> str:
    """README.md's table of every environment variable (variable, config key, default, what it does),
    rendered from the declarations: the settings first, then `Environment`'s."""
    rows = ["| variable | config key | default | what it does |", "|---|---|---|---|"]
    for path, field in _fields(Settings):
        var = _var_of(field)
        if var:
            rows.append(f"| `{var}` | `{'.'.join(path)}` | {_cell(_shown(field.default))} | "
                        f"{_cell(field.description or '')} |")
    for field in Environment.model_fields.values():
        var = _var_of(field)
        if var:
            rows.append(f"| `{var}` | — | {_cell(_shown(field.default))} | {_cell(field.description or '')} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    """`python -m clarity.config`: print the table of variables (paste it into README.md)."""
    sys.stdout.write(variables_table())


if __name__ == "__main__":
    main()
