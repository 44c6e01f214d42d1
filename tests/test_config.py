"""Settings: defaults, lockgate.yaml, environment precedence, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.config import load_settings
from lockgate.errors import ConfigError
from tests.helpers import write


def test_defaults_use_embedded_sqlite_in_dot_lockgate(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.home == tmp_path / ".lockgate"
    assert settings.db_url == f"sqlite:///{tmp_path / '.lockgate' / 'lockgate.db'}"
    assert settings.config_file is None


def test_file_values_and_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    write(tmp_path, "proj/lockgate.yaml", "home: data\nuser: ci-bot\n")
    settings = load_settings(cwd=tmp_path / "proj")
    assert settings.home == tmp_path / "proj" / "data"
    assert settings.user == "ci-bot"
    assert settings.config_file == tmp_path / "proj" / "lockgate.yaml"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "lockgate.yaml", "home: from-file\nuser: file-user\n")
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = load_settings()
    assert settings.home == tmp_path / "from-env"
    assert settings.db_url == "postgresql+psycopg://u@h/db"
    assert settings.user == "file-user"


def test_arguments_override_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOCKGATE_USER", "env-user")
    assert load_settings(user="arg-user").user == "arg-user"


def test_lockgate_config_names_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "conf/other.yaml", "user: from-other\n")
    monkeypatch.setenv("LOCKGATE_CONFIG", str(tmp_path / "conf/other.yaml"))
    assert load_settings().user == "from-other"


def test_unknown_setting_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "lockgate.yaml", "home: x\ndatabse_url: sqlite://\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert (
        str(info.value) == f"{tmp_path / 'lockgate.yaml'}:2: field 'databse_url': unknown setting"
    )


def test_nested_error_names_the_nested_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "lockgate.yaml",
        "providers:\n  openai:\n    max_retries: many\n",
    )
    with pytest.raises(ConfigError, match=r"lockgate.yaml:3: field 'providers.openai.max_retries'"):
        load_settings()


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_CACHE", "not json")
    with pytest.raises(ConfigError, match="LOCKGATE_CACHE"):
        load_settings()


def test_malformed_and_non_mapping_files(tmp_path: Path) -> None:
    write(tmp_path, "lockgate.yaml", "home: [oops\n")
    with pytest.raises(ConfigError, match=r"lockgate.yaml:1: malformed YAML"):
        load_settings()
    write(tmp_path, "lockgate.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings()


def test_empty_file_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "lockgate.yaml", "# nothing yet\n")
    assert load_settings().home == tmp_path / ".lockgate"
