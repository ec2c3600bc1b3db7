"""The process environment: the one module of Clarity that reads it. Other modules ask
`environment_value`, `session_id`, `model_cache_dir`, `xdg_runtime_dir` or `environment` instead of
reading `os.environ`; settings read their variables through `Variables`, the pydantic-settings source.

The few variables that are not settings (the session id, the model cache, ...) are the fields of
`Environment`, each declared once with what it does (see `clarity.config.fields.setting`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from clarity.config.fields import leaf_fields, setting, var_of
from clarity.project import HOME_VAR, PROJECT_DIR_VAR


def environment_value(name: str) -> str | None:
    """The process environment's `name` (None when unset or empty). The one reader of the environment:
    settings (`Variables`) and everything outside them (fault injection, the runtime folder, the
    session id) come through here."""
    value = os.environ.get(name)
    return value if value else None


def environment() -> dict[str, str]:
    """A copy of the whole process environment: for `clarity.project` (which must not import this
    module, so it is handed the variables it reads) and for what a child process inherits
    (`clarity.session_client.server_params`)."""
    return dict(os.environ)


class Variables(PydanticBaseSettingsSource):
    """The pydantic-settings source of the environment: each field's declared variable (see `setting`),
    nested under its section; an unset or empty variable is left out, so what lies below shows."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        var = var_of(field)
        return (environment_value(var) if var else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, field in leaf_fields(self.settings_cls):
            var = var_of(field)
            value = environment_value(var) if var else None
            if value is None:
                continue
            target = out
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return out


class FromEnvironment(BaseSettings):
    """pydantic-settings with one source of the environment, `Variables`, above the keyword arguments
    (for `Settings` those are config.json's values): no other variable, no .env file, no secrets
    folder is read."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return Variables(settings_cls), init_settings


class Environment(FromEnvironment):
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
                                       "the folder of the model files and their optimised copies (about 150 MB), "
                                       "one per user, shared by every project and session; unset: "
                                       "`$XDG_CACHE_HOME/clarity`")
    cache_home: Path | None = setting(None, "XDG_CACHE_HOME",
                                      "the user's cache folder (unset: `~/Library/Caches` where that folder "
                                      "exists, as on macOS, else `~/.cache`): the model cache is its `clarity`")
    threaded_stdio: bool = setting(False, "CLARITY_THREADED_STDIO",
                                   "`1`: `clarity serve` uses the MCP SDK's threaded stdio transport even on pipes "
                                   "(for measuring; see `clarity/mcp_stdio.py`)")
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


def threaded_stdio() -> bool:
    """CLARITY_THREADED_STDIO: serve stdio through the MCP SDK's own (threaded) transport."""
    return Environment().threaded_stdio


def xdg_runtime_dir() -> Path | None:
    """XDG_RUNTIME_DIR: the user's runtime folder for sockets (None: unset)."""
    return Environment().runtime_dir
