"""Settings: TOML file, SOCLE_* environment, precedence, validation and masking of secrets."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from socle.cli import cli
from socle.config import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, load_settings
from socle.errors import ConfigError

TOML = """
port = 9001
admin_key = "sk-socle-0123456789012345678901234567890123456789"
database_url = "postgresql://socle:hunter2@db.internal/socle"

[[engines]]
kind = "openai_compat"
name = "vllm-eu"
zone = "eu-sovereign"
base_url = "http://10.0.0.5:8000/v1"
api_key = "upstream-secret"
upstream_model = "mistral-small"

[[models]]
name = "assistant"
engines = ["vllm-eu"]
aliases = ["gpt-4o-mini"]
"""


def test_defaults_are_the_embedded_models() -> None:
    settings = load_settings(None, environ={})
    assert [e.kind for e in settings.engines] == ["llamacpp", "embeddings"]
    assert [m.name for m in settings.models] == [DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL]
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.sqlalchemy_url.startswith("sqlite+aiosqlite:///") and settings.sqlalchemy_url.endswith(
        "socle.db"
    )


def test_toml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "socle.toml"
    path.write_text(TOML)
    settings = load_settings(path, environ={})
    assert settings.port == 9001 and settings.models[0].aliases == ["gpt-4o-mini"]
    assert settings.sqlalchemy_url == "postgresql+psycopg://socle:hunter2@db.internal/socle"
    monkeypatch.setenv("SOCLE_PORT", "9002")
    monkeypatch.setenv("SOCLE_HOME", str(tmp_path / "home"))
    settings = load_settings(None, environ={"SOCLE_CONFIG": str(path)})
    assert settings.port == 9002 and settings.data_dir == tmp_path / "home"
    assert load_settings(path, environ={}, port=9003).port == 9003  # CLI flags win


def test_secrets_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "socle.toml"
    path.write_text(TOML)
    text = repr(load_settings(path, environ={})) + str(load_settings(path, environ={}).public_dump())
    for secret in ("hunter2", "upstream-secret", "0123456789012345678901234567890123456789"):
        assert secret not in text
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(path)])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert shown["engines"][0]["api_key"] == "**********" and shown["database_url"] == "**********"
    assert "hunter2" not in result.output and shown["port"] == 9001


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("port = 'many'", "port"),
        ("[[models]]\nname = 'x'\nengines = ['missing']", "unknown engine 'missing'"),
        (
            "[[engines]]\nkind = 'openai_compat'\nname = 'x'\nbase_url = 'http://h'",
            "engines.0.openai_compat.zone",
        ),
        ("[[engines]]\nkind = 'llamacpp'\nname = 'x'\nmodel_path = 'a.gguf'\nsha256 = 'abc'", "sha256"),
        ("surprise = 1", "surprise"),
        ("environment = 'production'\nadmin_key = 'changeme'", "production"),
    ],
)
def test_invalid_configuration_is_explained(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "socle.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert message in info.value.message and str(path) in info.value.message
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(path)])
    assert result.exit_code != 0 and message in result.output


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})
