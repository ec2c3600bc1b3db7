"""The files settings come from and the folders they name: `load_settings` (config.json checked, with the
variables over it; written with the defaults on first start), `resolve_home` and `make_layout` (`<home>`
and its folders, private, with a `.gitignore`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from clarity import __version__
from clarity.config.environment import environment, environment_value
from clarity.config.fields import section_of, var_at
from clarity.config.settings import Settings, WithoutVariables
from clarity.errors import ConfigError
from clarity.layout import Layout
from clarity.platform.files import ensure_private_dir
from clarity.project import choose_home


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
        var = var_at(Settings, e["loc"])
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
            logging.getLogger("clarity.config").warning(
                "%s: ignoring %s%s, which this Clarity (%s) does not know (a newer version's setting, or a typo)",
                source, prefix, key, __version__)
            continue
        section = section_of(field)
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
        WithoutVariables.model_validate(data)
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
    body = orjson.dumps(WithoutVariables().model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"
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
