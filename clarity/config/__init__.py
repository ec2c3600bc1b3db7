"""Settings: where `<home>` is, what `config.json` holds, and the environment variables.

Precedence, highest first: an explicit argument (`--home`), a `CLARITY_*` environment variable,
`<home>/config.json`, the defaults (`settings`). `config.json` is written with the defaults on first
start (`files.load_settings`). An empty variable counts as unset.

Each variable is declared once, on what it sets: a settings field names its variable with
`setting(default, "CLARITY_...", "what it does")` (`fields`); the few variables that are not settings (the
session id, the model cache, ...) are the fields of `environment.Environment`. Nothing else lists them:
`environment.Variables` reads them for pydantic-settings, and `table.variables_table()` renders README.md's
table of every variable from the same declarations (`python -m clarity.config` prints it;
tests/test_config.py checks the README's copy).

`environment` is the one module that reads the process environment: every other module asks
`environment_value`, `session_id`, `model_cache_dir`, `xdg_runtime_dir` or `environment` instead.
This package re-exports what the rest of Clarity uses.
"""

from clarity.config.environment import (
    Environment,
    environment,
    environment_value,
    model_cache_dir,
    session_id,
    threaded_stdio,
    xdg_runtime_dir,
)
from clarity.config.fields import setting
from clarity.config.files import GITIGNORE, load_settings, make_layout, resolve_home
from clarity.config.settings import (
    DEFAULT_MODEL,
    CoordinationSettings,
    EmbeddingSettings,
    EngineSettings,
    MemorySettings,
    ProjectSettings,
    Settings,
)
from clarity.config.table import variables_table

__all__ = [
    "DEFAULT_MODEL",
    "GITIGNORE",
    "CoordinationSettings",
    "EmbeddingSettings",
    "EngineSettings",
    "Environment",
    "MemorySettings",
    "ProjectSettings",
    "Settings",
    "environment",
    "environment_value",
    "load_settings",
    "make_layout",
    "model_cache_dir",
    "resolve_home",
    "session_id",
    "threaded_stdio",
    "setting",
    "variables_table",
    "xdg_runtime_dir",
]
