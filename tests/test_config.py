from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from clarity.config import (
    GITIGNORE,
    Settings,
    environment,
    environment_value,
    load_settings,
    make_layout,
    model_cache_dir,
    resolve_home,
    session_id,
    variables_table,
    xdg_runtime_dir,
)
from clarity.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_first_start_creates_layout_and_default_config(home: Path) -> None:
    s = load_settings(home)
    for sub in ("qdrant", "cache", "backups", "logs", "qdrant/.qdrant_coordination/waiters"):
        assert (home / sub).is_dir(), sub
    assert (home / "qdrant/.qdrant_coordination").stat().st_mode & 0o777 == 0o700
    cfg = orjson.loads((home / "config.json").read_bytes())
    assert cfg["coordination"]["mode"] == "forward"
    assert cfg["memory"]["max_content_bytes"] == 32 * 1024
    assert s.home == home.resolve()
    # the store ignores itself: a home inside a repository never shows in `git status`
    assert "*" in (home / ".gitignore").read_text().splitlines()
    assert s.layout.gitignore == home / ".gitignore"


def test_an_existing_home_gets_a_gitignore_and_a_users_own_is_kept(home: Path) -> None:
    load_settings(home)
    (home / ".gitignore").unlink()
    load_settings(home)  # a home made by an older version gets one on its next start
    assert (home / ".gitignore").read_bytes() == GITIGNORE
    (home / ".gitignore").write_text("*.log\n")
    load_settings(home)
    assert (home / ".gitignore").read_text() == "*.log\n"
    assert not [p.name for p in home.iterdir() if p.name.endswith(".tmp")]


def test_without_create_nothing_is_made(tmp_path: Path) -> None:
    where = tmp_path / "a" / "b" / "home"
    s = load_settings(where, create=False)
    assert s.home == where.resolve() and s.coordination.mode == "forward"
    assert not (tmp_path / "a").exists()


def test_a_home_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for create in (True, False):
        with pytest.raises(ConfigError, match=r"is a file, not a folder: give --home"):
            load_settings(afile, create=create)
    with pytest.raises(ConfigError) as e:
        make_layout(afile / "home")  # a file where a parent folder should be
    assert str(afile / "home") in e.value.message and "--home" in e.value.message
    assert afile.read_text() == "not a folder"


def test_home_precedence_and_symlinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLARITY_HOME", raising=False)
    assert resolve_home() == (tmp_path / ".claude" / "alunai-clarity").resolve()
    monkeypatch.setenv("CLARITY_HOME", str(link))
    assert resolve_home() == real.resolve()
    assert resolve_home(tmp_path / "explicit") == (tmp_path / "explicit").resolve()


def test_env_overrides_config(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_settings(home)
    (home / "config.json").write_bytes(orjson.dumps({"coordination": {"mode": "handoff"}}))
    assert load_settings(home).coordination.mode == "handoff"
    monkeypatch.setenv("CLARITY_COORDINATION_MODE", "forward")
    monkeypatch.setenv("CLARITY_CALL_DEADLINE_S", "7.5")
    s = load_settings(home)
    assert s.coordination.mode == "forward"
    assert s.coordination.call_deadline_s == 7.5


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (orjson.dumps({"memory": {"min_similarity": 7}}), "memory.min_similarity"),
        (orjson.dumps({"coordination": {"mode": "turbo"}}), "coordination.mode"),
    ],
)
def test_malformed_config_names_file_and_key(home: Path, body: bytes, needle: str) -> None:
    home.mkdir(parents=True)
    (home / "config.json").write_bytes(body)
    with pytest.raises(ConfigError) as e:
        load_settings(home)
    assert needle in e.value.message
    assert str(home / "config.json") in e.value.message
    assert (home / "config.json").read_bytes() == body  # never rewritten


def test_bad_env_value_names_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARITY_MIN_SIMILARITY", "lots")
    with pytest.raises(ConfigError, match="CLARITY_MIN_SIMILARITY"):
        load_settings(home)


# every variable as it was named before the settings moved to pydantic-settings, and the newer ones
KNOWN_VARIABLES = {
    "CLARITY_EMBEDDING_MODEL": ("embedding.model", "some/model"),
    "CLARITY_EMBEDDING_BATCH_SIZE": ("embedding.batch_size", 7),
    "CLARITY_MODEL_PRECISION": ("embedding.precision", "float"),
    "CLARITY_MAX_CONTENT_BYTES": ("memory.max_content_bytes", 1000),
    "CLARITY_MIN_SIMILARITY": ("memory.min_similarity", 0.5),
    "CLARITY_SIMILAR_THRESHOLD": ("memory.similar_threshold", 0.9),
    "CLARITY_RECENCY_WEIGHT": ("memory.recency_weight", 0.25),
    "CLARITY_IMPORTANCE_WEIGHT": ("memory.importance_weight", 0.125),
    "CLARITY_COORDINATION_MODE": ("coordination.mode", "handoff"),
    "CLARITY_CALL_DEADLINE_S": ("coordination.call_deadline_s", 7.5),
    "CLARITY_HEARTBEAT_S": ("coordination.heartbeat_s", 2.0),
    "CLARITY_HUNG_AFTER_S": ("coordination.hung_after_s", 20.0),
    "CLARITY_HANDOFF_QUANTUM_S": ("coordination.handoff_quantum_s", 0.5),
    "CLARITY_MAX_FRAME_BYTES": ("coordination.max_frame_bytes", 4096),
    "CLARITY_RETRY_MAX_WAIT_S": ("coordination.retry_max_wait_s", 0.5),
    "CLARITY_TICKET_AFTER_S": ("coordination.ticket_after_s", 3.0),
    "CLARITY_STANDBY_GRACE_S": ("coordination.standby_grace_s", 4.0),
    "CLARITY_STANDBY_POLL_S": ("coordination.standby_poll_s", 0.25),
    "CLARITY_STANDBY_WARM_INTERVAL_S": ("coordination.standby_warm_interval_s", 5.0),
    "CLARITY_LOG_LEVEL": ("log_level", "DEBUG"),
    "CLARITY_ENGINE": ("engine.kind", "qdrant"),
    "CLARITY_QDRANT_URL": ("engine.url", "http://localhost:6333"),
    "CLARITY_QDRANT_API_KEY": ("engine.api_key", "k"),
    "CLARITY_QDRANT_COLLECTION": ("engine.collection", "other"),
    "CLARITY_FLUSH_INTERVAL_S": ("engine.flush_interval_s", 0.0),
    "CLARITY_INDEX_THRESHOLD": ("engine.index_threshold", 5),
    "CLARITY_MIGRATE_DEADLINE_S": ("engine.migrate_deadline_s", 90.0),
    "CLARITY_SHARE_WORKTREES": ("project.share_worktrees", False),
}


def _at(settings: Settings, key: str) -> Any:
    value: Any = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def test_every_variable_sets_its_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_settings(home)
    for var, (_key, value) in KNOWN_VARIABLES.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        monkeypatch.setenv(var, text)
    s = load_settings(home)
    for var, (key, value) in KNOWN_VARIABLES.items():
        assert _at(s, key) == value, var
    # the variables go no further than this process's settings: config.json keeps its defaults
    cfg = orjson.loads((home / "config.json").read_bytes())
    assert cfg["memory"]["min_similarity"] == 0.25 and cfg["engine"]["kind"] == "edge"
    # the table lists each of them with its key, and nothing that is not declared
    rows = [row.split("|") for row in variables_table().splitlines()[2:]]
    listed = {cells[1].strip(" `"): cells[2].strip(" `") for cells in rows}
    assert {v: listed[v] for v in KNOWN_VARIABLES} == {v: key for v, (key, _) in KNOWN_VARIABLES.items()}
    assert set(listed) - set(KNOWN_VARIABLES) == {"CLARITY_HOME", "CLAUDE_PROJECT_DIR", "CLARITY_SESSION_ID",
                                                  "CLARITY_MODEL_CACHE", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
                                                  "CLARITY_THREADED_STDIO"}


def test_defaults_written_without_variables(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARITY_COORDINATION_MODE", "handoff")
    assert load_settings(home).coordination.mode == "handoff"
    assert orjson.loads((home / "config.json").read_bytes())["coordination"]["mode"] == "forward"


def test_empty_variable_counts_as_unset(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_settings(home)
    (home / "config.json").write_bytes(orjson.dumps({"memory": {"min_similarity": 0.5}}))
    monkeypatch.setenv("CLARITY_MIN_SIMILARITY", "")
    monkeypatch.setenv("CLARITY_QDRANT_URL", "")
    monkeypatch.setenv("CLARITY_SESSION_ID", "")
    s = load_settings(home)
    assert s.memory.min_similarity == 0.5 and s.engine.url is None
    assert session_id() is None


def test_only_declared_variables_are_read(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings' own lookup by field name is off: HOME, LOG_LEVEL, MEMORY... are not settings
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MEMORY", '{"min_similarity": 0.9}')
    monkeypatch.setenv("CLARITY_MEMORY__MIN_SIMILARITY", "0.9")
    s = load_settings(home)
    assert s.log_level == "INFO" and s.memory.min_similarity == 0.25
    assert s.home == home.resolve()


def test_variable_errors_name_variable_and_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARITY_ENGINE", "mongo")
    monkeypatch.setenv("CLARITY_CALL_DEADLINE_S", "-1")
    with pytest.raises(ConfigError) as e:
        load_settings(home)
    msg = e.value.message
    assert "environment variable CLARITY_ENGINE: engine.kind:" in msg
    assert "environment variable CLARITY_CALL_DEADLINE_S: coordination.call_deadline_s:" in msg
    assert "config.json" not in msg


def test_config_file_error_reported_even_when_a_variable_overrides_it(home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir(parents=True)
    (home / "config.json").write_bytes(orjson.dumps({"memory": {"min_similarity": 7}}))
    monkeypatch.setenv("CLARITY_MIN_SIMILARITY", "0.5")
    with pytest.raises(ConfigError) as e:
        load_settings(home)
    assert str(home / "config.json") in e.value.message and "memory.min_similarity" in e.value.message


def test_environment_only_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CLARITY_SESSION_ID", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert session_id() is None and xdg_runtime_dir() is None
    monkeypatch.setenv("CLARITY_SESSION_ID", "abc-1")
    monkeypatch.setenv("CLARITY_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert session_id() == "abc-1"
    assert model_cache_dir() == tmp_path / "models"
    assert xdg_runtime_dir() == tmp_path
    assert environment_value("CLARITY_SESSION_ID") == "abc-1"
    assert environment()["CLARITY_SESSION_ID"] == "abc-1"


def test_the_model_cache_is_one_per_user_never_in_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    for var in ("CLARITY_MODEL_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert model_cache_dir() == user / ".cache" / "clarity"  # Linux's convention
    (user / "Library" / "Caches").mkdir(parents=True)
    assert model_cache_dir() == user / "Library" / "Caches" / "clarity"  # where it exists: macOS's
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: a relative path is ignored
    assert model_cache_dir() == user / "Library" / "Caches" / "clarity"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "xdg" / "clarity"
    monkeypatch.setenv("CLARITY_MODEL_CACHE", str(tmp_path / "mine"))  # the override wins
    assert model_cache_dir() == tmp_path / "mine"
    assert not (tmp_path / "xdg").exists() and not (user / ".cache").exists()  # naming it makes nothing


def test_readme_table_is_generated() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- config-table:start -->\n", "<!-- config-table:end -->"
    assert readme.count(start) == 1 and readme.count(end) == 1
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == variables_table(), "README.md's table is stale: put `python -m clarity.config` between the markers"


def test_python_m_clarity_config_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "clarity.config"], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout == variables_table()


def test_only_config_reads_the_environment() -> None:
    readers = re.compile(r"os\.environ|getenv")
    found = [str(p.relative_to(REPO)) for p in sorted((REPO / "clarity").rglob("*.py"))
             if readers.search(p.read_text(encoding="utf-8"))]
    assert found == ["clarity/config/environment.py"]


def test_a_key_this_version_does_not_know_is_ignored_with_a_warning(home: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A config.json written by a newer Clarity (more settings) must not stop this one on the same store."""
    load_settings(home)
    cfg = home / "config.json"
    data = orjson.loads(cfg.read_bytes())
    data["coordination"]["a_setting_from_the_future"] = 3
    data["from_the_future"] = {"x": 1}
    data["memory"]["min_similarity"] = 0.4
    cfg.write_bytes(orjson.dumps(data))
    with caplog.at_level(logging.WARNING, logger="clarity.config"):
        s = load_settings(home)
    assert s.memory.min_similarity == 0.4
    assert "coordination.a_setting_from_the_future" in caplog.text and "from_the_future" in caplog.text
