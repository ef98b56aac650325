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
