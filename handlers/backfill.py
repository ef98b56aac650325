"""Backfill trigger: when Lore itself joins a channel, its history is read into the archive."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from app.backfill.service import Readers
from app.oauth import WorkspaceTokens
from app.services import Services
from handlers.channels import ChannelTypes
from handlers.slack_history import SlackHistory
from handlers.users import SlackUsers

log = logging.getLogger("lore.backfill")


def register(
    app: AsyncApp, services: Services, users: SlackUsers, channel_types: ChannelTypes
) -> None:
    async def on_member_joined(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        team_id = context.team_id or event.get("team") or ""
        if not context.bot_user_id or event.get("user") != context.bot_user_id:
            # someone else joined (a guest, say): who reads the channel is looked up again
            channel_types.forget(team_id, event.get("channel") or "")
            return
        reader = SlackHistory(client, team_id, users)
        await services.backfill.request(reader, event["channel"], again=True)

    app.event("member_joined_channel")(on_member_joined)


def token_workspace(client: AsyncWebClient) -> Readers:
    """One-token mode: a reader for the token's workspace (asked of auth.test once)."""
    token_team: list[str] = []

    async def reader(team_id: str) -> SlackHistory | None:
        if not token_team:
            token_team.append((await client.auth_test())["team_id"])
        return SlackHistory(client, team_id) if team_id == token_team[0] else None

    return reader


def installed_workspaces(tokens: WorkspaceTokens, api_url: str) -> Readers:
    """OAuth mode: a reader for any installed workspace, with its current bot token."""

    async def reader(team_id: str) -> SlackHistory | None:
        token = await tokens.bot_token(team_id)
        if token is None:
            return None
        return SlackHistory(AsyncWebClient(token=token, base_url=api_url), team_id)

    return reader


async def resume_backfills(readers: Readers, services: Services) -> None:
    """At start-up: resume the unfinished backfills of the workspaces `readers` can read, and
    from then on take over those a dead process leaves running."""
    if resumed := await services.backfill.resume(readers):
        log.info("resuming the unfinished backfills of %s", ", ".join(resumed))
    services.backfill.keep_adopting(readers)


async def backfill_installed(client: AsyncWebClient, team_id: str, services: Services) -> None:
    """Right after an install: queue every channel the bot is already a member of."""
    channels = await services.backfill.request_member_channels(SlackHistory(client, team_id))
    log.info("backfill of %s queued for %d channels", team_id, len(channels))
