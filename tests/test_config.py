from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from clarity.config import load_settings, resolve_home
from clarity.errors import ConfigError


def test_first_start_creates_layout_and_default_config(home: Path) -> None:
    s = load_settings(home)
    for sub in ("qdrant", "cache", "backups", "logs", "qdrant/.qdrant_coordination/waiters"):
        assert (home / sub).is_dir(), sub
    assert (home / "qdrant/.qdrant_coordination").stat().st_mode & 0o777 == 0o700
    cfg = orjson.loads((home / "config.json").read_bytes())
    assert cfg["coordination"]["mode"] == "forward"
    assert cfg["memory"]["max_content_bytes"] == 32 * 1024
    assert s.home == home.resolve()


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
        (orjson.dumps({"colour": "blue"}), "colour"),
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
