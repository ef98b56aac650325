"""Uninstall: `app_uninstalled`, or `tokens_revoked` with the bot token, forgets the workspace.

The event is acknowledged at once; the deletion runs in the background pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from app.services import Services

log = logging.getLogger("lore.uninstall")


def register(
    app: AsyncApp, services: Services, forget_cached: Callable[[str], None] | None = None
) -> None:
    """`forget_cached(team_id)` drops what the Slack edge keeps in memory of the workspace."""

    def forget(context: AsyncBoltContext, body: dict[str, Any], why: str) -> None:
        team_id = context.team_id or body.get("team_id")
        if not team_id:
            log.warning("%s without a team id; nothing deleted", why)
            return
        log.info("%s for %s: deleting its data", why, team_id)
        if forget_cached is not None:
            forget_cached(team_id)
        services.background.spawn(services.workspace_data.forget(team_id), name="forget")

    @app.event("app_uninstalled")
    async def on_app_uninstalled(context: AsyncBoltContext, body: dict[str, Any]) -> None:
        forget(context, body, "app_uninstalled")

    @app.event("tokens_revoked")
    async def on_tokens_revoked(
        event: dict[str, Any], context: AsyncBoltContext, body: dict[str, Any]
    ) -> None:
        if bot_token_revoked(event):
            forget(context, body, "bot token revoked")


def bot_token_revoked(event: dict[str, Any]) -> bool:
    """Whether a `tokens_revoked` event lists a bot token (not only users' tokens)."""
    tokens = event.get("tokens") or {}
    return bool(tokens.get("bot"))
