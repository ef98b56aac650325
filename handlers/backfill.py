"""Backfill trigger: when Lore itself joins a channel, its history is read into the archive."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from app.oauth import WorkspaceTokens
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
    """One-token mode at start-up: resume the unfinished backfills of the token's workspace,
    and from then on take over those a dead process leaves running."""
    token_team: list[str] = []  # asked of auth.test once, when first needed

    async def reader(team_id: str) -> SlackHistory | None:
        if not token_team:
            token_team.append((await client.auth_test())["team_id"])
        return SlackHistory(client, team_id) if team_id == token_team[0] else None

    if await services.backfill.resume(reader):
        log.info("resuming the unfinished backfills of %s", token_team[0])
    services.backfill.keep_adopting(reader)


async def resume_installed_backfills(
    tokens: WorkspaceTokens, api_url: str, services: Services
) -> None:
    """OAuth mode at start-up: resume the unfinished backfills of every installed workspace
    (each read with its current bot token), and from then on take over those a dead process
    leaves running."""

    async def reader(team_id: str) -> SlackHistory | None:
        token = await tokens.bot_token(team_id)
        if token is None:
            return None
        return SlackHistory(AsyncWebClient(token=token, base_url=api_url), team_id)

    if resumed := await services.backfill.resume(reader):
        log.info("resuming the unfinished backfills of %d workspaces", len(resumed))
    services.backfill.keep_adopting(reader)


async def backfill_installed(client: AsyncWebClient, team_id: str, services: Services) -> None:
    """Right after an install: queue every channel the bot is already a member of."""
    channels = await services.backfill.request_member_channels(SlackHistory(client, team_id))
    log.info("backfill of %s queued for %d channels", team_id, len(channels))
