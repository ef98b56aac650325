"""Every setting Lore reads, from environment variables and `.env` (listed in the README)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memory.ranking import Ranking

SLACK_API_URL = "https://slack.com/api/"
DEFAULT_BOT_SCOPES = (
    "app_mentions:read,assistant:write,channels:history,channels:join,channels:read,chat:write,"
    "commands,groups:history,groups:read,im:history,im:read,im:write,mpim:history,mpim:read,"
    "team:read,users:read"
)


MIN_TOKEN_CHARS = 32
"""LORE_ADMIN_TOKEN and LORE_METRICS_TOKEN are at least this long."""


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)


def parse_duration(value: str) -> float:
    """Seconds from "90", "90s", "15m", "1.5h" or "1d"."""
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(f"must be seconds or a duration like 15m, 2h, got {value!r}")
    number, unit = match.groups()
    return float(number) * DURATION_UNITS[unit.lower() or "s"]


class Settings(BaseSettings):
    """Lore's configuration; an invalid value stops start-up with one readable line."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = SLACK_API_URL
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_redirect_uri: str | None = None
    lore_slack_scopes: str = DEFAULT_BOT_SCOPES
    lore_token_rotation_minutes: int = Field(default=120, ge=1, le=720)
    lore_oauth_state_seconds: int = Field(default=600, ge=1, le=86400)
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    lore_model: str = "claude-sonnet-4-6"
    lore_reflect_model: str = "claude-haiku-4-5"
    lore_data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    chroma_url: str | None = None
    lore_embedding_model_dir: Path | None = None
    lore_model_cache_dir: Path | None = None
    lore_embedding_threads: int = Field(default=1, ge=1, le=64)
    lore_embedding_precision: Literal["fp32", "int8"] = "int8"
    lore_ingest_linger: float = Field(default=0.25, ge=0, le=5)
    lore_search_depth: int = Field(default=Ranking.depth, ge=1, le=1000)
    lore_search_rrf_k: float = Field(default=Ranking.rrf_k, ge=0)
    lore_search_dense_weight: float = Field(default=Ranking.dense_weight, ge=0)
    lore_search_context_weight: float = Field(default=Ranking.context_weight, ge=0)
    lore_search_date_weight: float = Field(default=Ranking.date_weight, ge=0)
    port: int = Field(default=3000, ge=0, le=65535)
    lore_host: str | None = None
    lore_emulator_port: int = Field(default=3001, ge=0, le=65535)
    lore_log_level: str = "INFO"
    lore_log_format: Literal["text", "json"] = "text"
    lore_max_steps: int = Field(default=6, ge=1, le=50)
    lore_max_tokens: int = Field(default=1024, ge=64)
    lore_history_tokens: int = Field(default=8000, ge=500)
    lore_max_concurrent_turns: int = Field(default=128, ge=1)
    lore_max_queued_turns: int = Field(default=500, ge=1)
    lore_max_pending_archive: int = Field(default=1000, ge=1)
    lore_max_archive_backlog: int = Field(default=5000, ge=1)
    lore_shutdown_grace: float = Field(default=30.0, ge=0)
    lore_memory_block_limit: int = Field(default=5000, ge=100)
    lore_model_timeout: float = Field(default=60.0, gt=0)
    lore_model_retries: int = Field(default=2, ge=0, le=10)
    lore_admin_token: SecretStr | None = None
    lore_metrics_token: SecretStr | None = None
    lore_backfill_history_per_minute: float = Field(default=50.0, gt=0)
    lore_backfill_replies_per_minute: float = Field(default=50.0, gt=0)
    lore_backfill_page_size: int = Field(default=200, ge=1, le=999)
    lore_import_max_day_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    lore_intake_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    lore_reflect_after: float = Field(default=15 * 60.0, gt=0)
    lore_reflect_tokens_per_day: int = Field(default=2_000_000, ge=0)

    @property
    def ranking(self) -> Ranking:
        """How search ranks, from the LORE_SEARCH_* settings."""
        return Ranking(
            depth=self.lore_search_depth,
            rrf_k=self.lore_search_rrf_k,
            dense_weight=self.lore_search_dense_weight,
            context_weight=self.lore_search_context_weight,
            date_weight=self.lore_search_date_weight,
        )

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "anthropic_api_key",
        "lore_admin_token",
        "lore_metrics_token",
        "slack_client_secret",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "database_url",
        "redis_url",
        "chroma_url",
        "anthropic_base_url",
        "slack_client_id",
        "slack_redirect_uri",
        "lore_host",
        mode="before",
    )
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("lore_embedding_model_dir", "lore_model_cache_dir", mode="before")
    @classmethod
    def _blank_dir_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("lore_admin_token", "lore_metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
            )
        return value

    @field_validator("slack_api_url", "anthropic_base_url", "chroma_url", "slack_redirect_uri")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlparse(value).scheme
        if scheme in ("postgres", "postgresql"):
            return "postgresql+asyncpg" + value[len(scheme) :]
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            return "sqlite+aiosqlite" + value[len(scheme) :]
        if scheme == "postgresql+asyncpg":
            return value
        raise ValueError("must be a sqlite:// or postgresql:// URL")

    @field_validator("lore_reflect_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("lore_log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in ("text", "json"):
            return value.lower()
        raise ValueError("must be text or json")

    @field_validator("lore_log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _slack_credentials_complete(self) -> Settings:
        http_mode = self.slack_bot_token is not None and self.slack_app_token is None
        if http_mode and self.slack_signing_secret is None:
            raise ValueError(
                "SLACK_SIGNING_SECRET is required when SLACK_BOT_TOKEN is set "
                "(or set SLACK_APP_TOKEN for Socket Mode)"
            )
        if self.slack_app_token is not None and self.slack_bot_token is None and not self.oauth:
            raise ValueError(
                "SLACK_APP_TOKEN (Socket Mode) also needs SLACK_BOT_TOKEN "
                "(or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install with OAuth)"
            )
        return self

    @model_validator(mode="after")
    def _oauth_consistent(self) -> Settings:
        if (self.slack_client_id is None) != (self.slack_client_secret is None):
            raise ValueError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET must be set together")
        if self.oauth and self.slack_bot_token is not None:
            raise ValueError(
                "set either SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and "
                "SLACK_CLIENT_SECRET (installs through OAuth), not both"
            )
        if self.oauth and self.slack_app_token is None and self.slack_signing_secret is None:
            raise ValueError(
                "SLACK_SIGNING_SECRET is required with SLACK_CLIENT_ID in HTTP mode "
                "(or set SLACK_APP_TOKEN for Socket Mode)"
            )
        if self.slack_redirect_uri is not None and not self.oauth:
            raise ValueError("SLACK_REDIRECT_URI needs SLACK_CLIENT_ID and SLACK_CLIENT_SECRET")
        if not self.lore_slack_scopes.replace(",", " ").split():
            raise ValueError("LORE_SLACK_SCOPES must name at least one bot scope")
        return self

    @property
    def oauth(self) -> bool:
        """Installs through OAuth (SLACK_CLIENT_ID/SECRET): one installation per workspace."""
        return self.slack_client_id is not None and self.slack_client_secret is not None

    @property
    def local_mode(self) -> bool:
        """No Slack credentials: Lore runs against the built-in Slack emulator."""
        return self.slack_bot_token is None and not self.oauth

    @property
    def bind_host(self) -> str:
        """Where the HTTP server listens: LORE_HOST, else 127.0.0.1 in local mode (the emulator
        signs its deliveries with a secret only this machine knows) and 0.0.0.0 otherwise."""
        if self.lore_host is not None:
            return self.lore_host
        return "127.0.0.1" if self.local_mode else "0.0.0.0"

    def secret_values(self) -> list[str]:
        """The values of every secret setting, for the logs to mask wherever they appear."""
        secrets = (
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.slack_client_secret,
            self.anthropic_api_key,
            self.lore_admin_token,
            self.lore_metrics_token,
        )
        values = [secret.get_secret_value() for secret in secrets if secret is not None]
        for url in (self.database_url, self.redis_url, self.chroma_url, self.anthropic_base_url):
            password = urlparse(url).password if url else None
            if password:
                values.append(password)
        return values

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def model_cache(self) -> Path:
        """Where a fetched model and the int8 copy are kept (shareable between processes)."""
        return self.lore_model_cache_dir or self.lore_data_dir / "models"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.lore_data_dir / 'lore.db'}"


class SettingsError(Exception):
    """A setting is wrong; the message is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation error into one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        field = "".join(str(part) for part in first["loc"]) or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        name = field.upper() if field != "settings" else "settings"
        raise SettingsError(f"invalid setting {name}: {message}") from None
