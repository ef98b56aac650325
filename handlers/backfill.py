"""Backfill trigger: when Lore itself joins a channel, its history is read into the archive."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from app.services import Services
from handlers.slack_history import SlackHistory
from handlers.users import SlackUsers

log = logging.getLogger("lore.backfill")


def register(app: AsyncApp, services: Services, users: SlackUsers) -> None:
    async def on_member_joined(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        if not context.bot_user_id or event.get("user") != context.bot_user_id:
            return
        team_id = context.team_id or event.get("team") or ""
        reader = SlackHistory(client, team_id, users)
        await services.backfill.request(reader, event["channel"], again=True)

    app.event("member_joined_channel")(on_member_joined)


async def resume_backfill(client: AsyncWebClient, services: Services) -> None:
    """One-token mode at start-up: resume the unfinished backfills of the token's workspace."""
    if not await services.backfill.state.teams_unfinished():
        return
    team_id = (await client.auth_test())["team_id"]
    resumed = await services.backfill.resume(
        lambda team: SlackHistory(client, team) if team == team_id else None
    )
    if resumed:
        log.info("resuming the unfinished backfills of %s", team_id)


async def backfill_installed(client: AsyncWebClient, team_id: str, services: Services) -> None:
    """Right after an install: queue every channel the bot is already a member of."""
    channels = await services.backfill.request_member_channels(SlackHistory(client, team_id))
    log.info("backfill of %s queued for %d channels", team_id, len(channels))
