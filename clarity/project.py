"""Which store a session uses, and why: `<home>` follows the project, not the directory a client
happened to start the server in.

Rules, first match wins:

1. `--home DIR` (an explicit argument).
2. `CLARITY_HOME`.
3. `<root>/.claude/alunai-clarity`, where `<root>` comes from the project directory
   (`CLAUDE_PROJECT_DIR` when set, else the current directory), symlinks resolved:
   - inside a git repository, `<root>` is the root of the repository's MAIN checkout, found through the
     common git dir, so a subfolder and every linked worktree (`git worktree add`) share one store;
   - with worktree sharing off (`CLARITY_SHARE_WORKTREES=0`, or `"project": {"share_worktrees": false}`
     in the main checkout's `.claude/alunai-clarity/config.json`), `<root>` is the top of the checkout
     the project directory is in (a linked worktree gets its own store; subfolders still share);
   - outside git, `<root>` is the project directory itself.

The variables come from the caller (`env`: `clarity.config` passes the process environment; this
module reads none by itself). Git is read from the files (`.git` directories, `.git` files with
`gitdir:`, the `commondir` file); no git binary is needed. Guarantees: the answer depends only on the
environment and the files named above; nothing is created here. Not handled: a repository whose
common dir is not a `.git` folder inside a checkout (a bare repository with worktrees, a submodule,
`--separate-git-dir`): there the store goes to the top of the checkout the project directory is in.
`GIT_DIR` is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from clarity.errors import ConfigError

STORE_DIR = Path(".claude") / "alunai-clarity"
HOME_VAR = "CLARITY_HOME"
PROJECT_DIR_VAR = "CLAUDE_PROJECT_DIR"
SHARE_VAR = "CLARITY_SHARE_WORKTREES"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Checkout:
    """Where the project directory sits in git. `top`: the top of its checkout; `main`: the main
    checkout's root (None when there is none to find, e.g. a bare repository)."""

    top: Path
    main: Path | None

    @property
    def linked(self) -> bool:
        return self.main is not None and self.main != self.top


@dataclass(frozen=True)
class HomeChoice:
    path: Path
    source: str  # a sentence: which store and why


def _gitdir_of(dot_git: Path) -> Path | None:
    """The git dir a `.git` entry stands for: the folder itself, or what a `.git` file points to."""
    if dot_git.is_dir():
        return dot_git
    try:
        text = dot_git.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("gitdir:"):
            target = Path(line[len("gitdir:"):].strip())
            return (dot_git.parent / target).resolve() if not target.is_absolute() else target.resolve()
    return None


def _common_dir(gitdir: Path) -> Path:
    try:
        rel = (gitdir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return gitdir
    p = Path(rel)
    return (p if p.is_absolute() else gitdir / p).resolve()


def find_checkout(start: Path) -> Checkout | None:
    """The git checkout `start` is in (walking up to the filesystem root), or None outside git."""
    for d in (start, *start.parents):
        dot_git = d / ".git"
        try:
            if not (dot_git.is_dir() or dot_git.is_file()):
                continue
        except OSError:  # a folder on the way up this user may not search: no repository found there
            continue
        gitdir = _gitdir_of(dot_git)
        if gitdir is None or not (gitdir / "HEAD").exists():
            return Checkout(top=d, main=None)
        common = _common_dir(gitdir)
        main = common.parent if common.name == ".git" and common.parent.is_dir() else None
        if gitdir == common and main is None:
            main = d  # a plain checkout whose git dir is elsewhere (--separate-git-dir, a submodule)
        return Checkout(top=d, main=main)
    return None


def _parse_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{where} must be one of 1/0, true/false, yes/no, on/off, not {value!r}")


def share_worktrees(main: Path, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether linked worktrees share the main checkout's store, and where that was decided.
    `CLARITY_SHARE_WORKTREES` wins over `project.share_worktrees` in the main store's config.json."""
    raw = env.get(SHARE_VAR)
    if raw:
        return _parse_bool(raw, SHARE_VAR), SHARE_VAR
    config = main / STORE_DIR / "config.json"
    if not config.is_file():
        return True, "default"
    try:
        data = orjson.loads(config.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ConfigError(f"{config} is not valid JSON: {e}") from e
    value = data.get("project", {}).get("share_worktrees", True) if isinstance(data, dict) else True
    if not isinstance(value, bool):
        raise ConfigError(f"invalid configuration in {config}: project.share_worktrees must be true or false")
    return value, str(config)


def choose_home(explicit: str | os.PathLike[str] | None = None, *, env: Mapping[str, str],
                cwd: Path | None = None) -> HomeChoice:
    """Apply the rules in the module docstring to the environment `env` (the caller's: this module
    never reads the process environment; `clarity.config.environment()` gives it). Raises ConfigError
    on a malformed switch."""
    if explicit:
        return HomeChoice(Path(explicit).expanduser().resolve(), "--home")
    if env.get(HOME_VAR):
        return HomeChoice(Path(env[HOME_VAR]).expanduser().resolve(), HOME_VAR)
    if env.get(PROJECT_DIR_VAR):
        project, origin = Path(env[PROJECT_DIR_VAR]).expanduser().resolve(), PROJECT_DIR_VAR
    else:
        try:
            project, origin = (cwd or Path.cwd()).resolve(), "the current directory"
        except FileNotFoundError:
            raise ConfigError("the current directory no longer exists: cd into your project (or give "
                              "--home DIR)") from None
    where = f"project directory {project} ({origin})"
    co = find_checkout(project)
    if co is None:
        return HomeChoice(project / STORE_DIR, f"{where}, not in a git repository")
    if co.main is None:
        return HomeChoice(co.top / STORE_DIR, f"git checkout {co.top} (no main checkout found) of {where}")
    if not co.linked:
        return HomeChoice(co.main / STORE_DIR, f"git main checkout {co.main} of {where}")
    share, decided_by = share_worktrees(co.main, env)
    if share:
        return HomeChoice(co.main / STORE_DIR,
                          f"git main checkout {co.main}, shared with linked worktree {co.top} of {where}")
    return HomeChoice(co.top / STORE_DIR,
                      f"linked worktree {co.top} of {where}; worktrees kept apart by {decided_by}")
