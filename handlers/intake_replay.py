"""Archiving, and answering, what a dead process acknowledged and left in the intake (see
`handlers.intake`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from app.intake import Replay
from app.oauth import WorkspaceTokens
from app.services import Services
from handlers import messages
from handlers.access_facts import AccessFacts
from handlers.permalinks import WorkspaceUrls
from handlers.replay_check import Now, in_slack_now
from memory.intake import Payload, Serves

log = logging.getLogger("lore.intake")

Clients = Callable[[str], Awaitable[AsyncWebClient | None]]
"""team_id -> a Web API client on its bot token, if this process serves the workspace."""


def replayer(services: Services, clients: Clients, access: AccessFacts) -> Replay:
    """Archives a kept event the way the live listener does, with the workspace's client, and
    answers the question it asks if that was left unanswered. A new message is first looked
    up in Slack (`handlers.replay_check`): one deleted meanwhile is neither archived nor
    answered (and leaves the archive, if it got there)."""
    workspace_urls = WorkspaceUrls()

    async def replay(team_id: str, payload: Payload) -> None:
        client = await clients(team_id)
        if client is None:
            raise LookupError(f"no bot token for {team_id}")
        event = payload["event"]
        now = await _kept_message_now(client, event)
        if now is Now.DELETED:
            log.info("a message left unarchived was deleted meanwhile: it is not archived")
            await services.ingest.delete(team_id, event["channel"], event["ts"])
            return
        await messages.archive_kept(
            services,
            access.channel_types,
            access.users,
            workspace_urls,
            client,
            team_id,
            event,
        )
        if now is Now.WAITING:
            await messages.answer_kept(services, access, workspace_urls, client, team_id, payload)

    return replay


async def _kept_message_now(client: AsyncWebClient, event: dict[str, Any]) -> Now:
    """Where a kept new message stands in Slack now; an edit or deletion is not looked up."""
    if event.get("subtype") not in messages.NEW_MESSAGE_SUBTYPES or "ts" not in event:
        return Now.WAITING
    thread_ts = event.get("thread_ts") or event["ts"]
    return await in_slack_now(client, event["channel"], thread_ts, event["ts"])


def token_clients(client: AsyncWebClient) -> Clients:
    """One-token mode: the token's workspace (asked of auth.test once, when first needed)."""
    token_team: list[str] = []

    async def of(team_id: str) -> AsyncWebClient | None:
        if not token_team:
            token_team.append((await client.auth_test())["team_id"])
        return client if team_id == token_team[0] else None

    return of


def installed_clients(tokens: WorkspaceTokens, api_url: str) -> Clients:
    """OAuth mode: any installed workspace, with its current bot token."""

    async def of(team_id: str) -> AsyncWebClient | None:
        token = await tokens.bot_token(team_id)
        return AsyncWebClient(token=token, base_url=api_url) if token else None

    return of


def serving(clients: Clients) -> Serves:
    async def serves(team_id: str) -> bool:
        return await clients(team_id) is not None

    return serves


def archive_what_was_left(clients: Clients, services: Services, access: AccessFacts) -> None:
    """At start-up: archive (and answer) the message events a dead process acknowledged and
    left, and (with several processes) keep looking for those of processes that die later."""
    services.intake.keep_adopting(replayer(services, clients, access), serving(clients))
