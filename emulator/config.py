"""Configuration of the Slack emulator."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

DEFAULT_CLIENT_ID = "1000000000.2000000000"


def random_secret() -> str:
    """A secret made for one emulator (32 hex digits, like Slack's signing secrets)."""
    return secrets.token_hex(16)


def random_bot_token() -> str:
    return f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"


def random_app_token() -> str:
    return f"xapp-1-A0LORE-{secrets.token_hex(16)}"


@dataclass
class EmulatorConfig:
    """Everything the emulator needs to know to play one Slack workspace with one app.

    The secrets and tokens are made at random for each emulator unless given (no fixed secret
    exists anyone could sign requests with); `python -m emulator` prints them.
    `events_url=None` means events are only delivered over Socket Mode (when a client is
    connected) and otherwise dropped. `retry_delays` are the pauses before retry 1, 2, 3 of
    a failed delivery (a non-2xx answer or none within `ack_timeout` seconds).
    OAuth (see `emulator.oauth`): `oauth_redirect_url` is the app's registered redirect URL;
    with `token_rotation` issued tokens expire after `token_expires_in` seconds.
    """

    signing_secret: str = field(default_factory=random_secret)
    bot_token: str = field(default_factory=random_bot_token)
    app_token: str = field(default_factory=random_app_token)
    verification_token: str = field(default_factory=random_secret)
    events_url: str | None = "http://127.0.0.1:3000/slack/events"
    team_id: str = "T0LORE"
    team_domain: str = "lore-demo"
    team_name: str = "Lore Demo"
    bot_user_id: str = "U0LORE"
    bot_id: str = "B0LORE"
    bot_name: str = "lore"
    app_id: str = "A0LORE"
    host: str = "127.0.0.1"
    port: int = 0
    retry_delays: tuple[float, ...] = (1.0, 60.0, 300.0)
    ack_timeout: float = 3.0
    seed_demo: bool = True
    deliver_bot_messages: bool = True
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default_factory=random_secret)
    oauth_redirect_url: str | None = None
    token_rotation: bool = False
    token_expires_in: int = 43200
