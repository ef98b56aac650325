"""Settings: defaults, normalisation, and one readable line naming a wrong variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings
from app.store_lock import unshared_vectors
from tests.conftest import ROOT

SETTINGS_UNDER_TEST = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "DATABASE_URL",
    "REDIS_URL",
    "CHROMA_URL",
    "ANTHROPIC_API_KEY",
    "PORT",
    "LORE_DATA_DIR",
    "LORE_MODEL_CACHE_DIR",
    "LORE_EMBEDDING_PRECISION",
    "LORE_HOST",
    "LORE_ADMIN_TOKEN",
    "LORE_METRICS_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SETTINGS_UNDER_TEST:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_local_and_embedded() -> None:
    settings = load_settings()
    assert settings.local_mode and not settings.socket_mode
    assert settings.port == 3000
    assert settings.database == "sqlite+aiosqlite:///data/lore.db"
    assert settings.redis_url is None and settings.chroma_url is None
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.lore_embedding_precision == "int8"
    assert settings.model_cache == Path("data/models")


def test_the_model_cache_can_be_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORE_DATA_DIR", "/srv/lore-a")
    monkeypatch.setenv("LORE_MODEL_CACHE_DIR", "/srv/models")
    assert load_settings().model_cache == Path("/srv/models")
    monkeypatch.setenv("LORE_MODEL_CACHE_DIR", "")
    assert load_settings().model_cache == Path("/srv/lore-a/models")


def test_postgres_url_is_normalised_to_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/lore")
    assert load_settings().database == "postgresql+asyncpg://u@db:5432/lore"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "70000", "invalid setting PORT"),
        ("PORT", "abc", "invalid setting PORT"),
        ("REDIS_URL", "http://x", "invalid setting REDIS_URL: must start with redis://"),
        ("DATABASE_URL", "mysql://x", "invalid setting DATABASE_URL"),
        ("SLACK_BOT_TOKEN", "xoxp-user", "invalid setting SLACK_BOT_TOKEN: must be a bot token"),
        ("SLACK_API_URL", "slack.com", "invalid setting SLACK_API_URL"),
    ],
)
def test_wrong_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=expected):
        load_settings()


def test_bot_token_without_signing_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET is required"):
        load_settings()
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert load_settings().socket_mode


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shh-secret")
    assert "very-secret" not in repr(load_settings())


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=4567\n")
    assert load_settings().port == 4567


def test_cli_stops_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "REDIS_URL": "nope://"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lore: invalid setting REDIS_URL: must start with redis://, rediss:// or unix://"
    ]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, None),
        ({"DATABASE_URL": "sqlite+aiosqlite:///elsewhere.db"}, None),
        ({"DATABASE_URL": "postgresql://u@db/lore"}, "DATABASE_URL points"),
        ({"REDIS_URL": "redis://r:6379/0"}, "REDIS_URL points"),
        (
            {"DATABASE_URL": "postgresql://u@db/lore", "REDIS_URL": "redis://r/0"},
            "DATABASE_URL and",
        ),
        ({"DATABASE_URL": "postgresql://u@db/lore", "CHROMA_URL": "http://c:8000"}, None),
    ],
)
def test_shared_stores_with_embedded_vectors_are_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    warning = unshared_vectors(load_settings())
    if named is None:
        assert warning is None
    else:
        assert warning is not None and named in warning and "CHROMA_URL is unset" in warning


@pytest.mark.parametrize("name", ["LORE_ADMIN_TOKEN", "LORE_METRICS_TOKEN"])
def test_a_short_admin_or_metrics_token_stops_start_up_naming_it(tmp_path: Path, name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), name: "x" * 31},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lore: invalid setting {name}: must be at least 32 characters "
        "(e.g. `openssl rand -hex 32`)"
    ]


def test_admin_and_metrics_tokens_of_32_characters_are_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LORE_ADMIN_TOKEN", "a" * 32)
    monkeypatch.setenv("LORE_METRICS_TOKEN", "m" * 40)
    settings = load_settings()
    assert settings.lore_admin_token is not None and settings.lore_metrics_token is not None


def test_local_mode_listens_on_loopback_unless_lore_host_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().bind_host == "127.0.0.1"
    monkeypatch.setenv("LORE_HOST", "0.0.0.0")
    assert load_settings().bind_host == "0.0.0.0"
    monkeypatch.delenv("LORE_HOST")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "0" * 32)
    assert load_settings().bind_host == "0.0.0.0"


def test_secret_values_list_every_secret_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "SLACK_CLIENT_ID": "1.2",
        "SLACK_CLIENT_SECRET": "client-" + "c" * 24,
        "SLACK_SIGNING_SECRET": "signing-" + "s" * 24,
        "SLACK_APP_TOKEN": "xapp-1-" + "a" * 24,
        "ANTHROPIC_API_KEY": "model-" + "k" * 24,
        "LORE_ADMIN_TOKEN": "d" * 32,
        "LORE_METRICS_TOKEN": "m" * 32,
        "DATABASE_URL": "postgresql://lore:db-password@db/lore",
        "REDIS_URL": "redis://:redis-password@r:6379/0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    secrets = set(load_settings().secret_values())
    assert secrets == {
        values["SLACK_CLIENT_SECRET"],
        values["SLACK_SIGNING_SECRET"],
        values["SLACK_APP_TOKEN"],
        values["ANTHROPIC_API_KEY"],
        values["LORE_ADMIN_TOKEN"],
        values["LORE_METRICS_TOKEN"],
        "db-password",
        "redis-password",
    }
