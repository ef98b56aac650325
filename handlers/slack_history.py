"""Reads a workspace's channels for the backfill (`app.backfill.ChannelReader`) over the Web API.

It uses its own client on the caller's token: the SDK's rate-limit handler waits `Retry-After`
and retries each 429 up to RATE_LIMIT_RETRIES times, and connection and server errors are
retried too.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from app.backfill import Page
from handlers.channels import ChannelTypes
from handlers.permalinks import WorkspaceUrls, permalink
from handlers.slack_retries import retry_handlers
from handlers.users import SlackUsers

RATE_LIMIT_RETRIES = 20
MEMBER_TYPES = "public_channel,private_channel,mpim,im"
MAX_PAGES = 100


def backfill_client(token: str, base_url: str) -> AsyncWebClient:
    """A client whose 429s wait for Retry-After and are retried (slack-sdk's own handler)."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=retry_handlers(rate_limit_retries=RATE_LIMIT_RETRIES),
    )


class SlackHistory:
    """One workspace's channels read through conversations.history / conversations.replies."""

    def __init__(
        self, client: AsyncWebClient, team_id: str, users: SlackUsers | None = None
    ) -> None:
        self.team_id = team_id
        self._client = backfill_client(client.token or "", client.base_url)
        self._channel_types = ChannelTypes()
        self._urls = WorkspaceUrls()
        self._names = users or SlackUsers()

    async def history(
        self, channel_id: str, *, latest: str, cursor: str | None, limit: int
    ) -> Page:
        response = await self._client.conversations_history(
            channel=channel_id, latest=latest, cursor=cursor, limit=limit
        )
        return _page(response.data)

    async def replies(
        self, channel_id: str, thread_ts: str, *, latest: str, cursor: str | None, limit: int
    ) -> Page:
        response = await self._client.conversations_replies(
            channel=channel_id, ts=thread_ts, latest=latest, cursor=cursor, limit=limit
        )
        return _page(response.data)

    async def channel_type(self, channel_id: str) -> str:
        return await self._channel_types.of(self._client, self.team_id, channel_id)

    async def author(self, raw: dict[str, Any]) -> str | None:
        profile = raw.get("bot_profile")
        bot_name = raw.get("username") or (
            profile.get("name") if isinstance(profile, dict) else None
        )
        if isinstance(bot_name, str) and bot_name.strip():
            return bot_name.strip()
        user = raw.get("user")
        return await self._names.name(
            self._client, self.team_id, user if isinstance(user, str) else None
        )

    async def permalink(self, channel_id: str, ts: str, thread_ts: str | None) -> str | None:
        return permalink(await self._urls.of(self._client, self.team_id), channel_id, ts, thread_ts)

    async def member_channels(self) -> list[str]:
        channels: list[str] = []
        cursor: str | None = None
        for _page in range(MAX_PAGES):
            response = await self._client.users_conversations(
                types=MEMBER_TYPES, exclude_archived=True, limit=200, cursor=cursor
            )
            channels.extend(channel["id"] for channel in response.get("channels") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return channels


def _page(data: Any) -> Page:
    body = data if isinstance(data, dict) else {}
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    cursor = (body.get("response_metadata") or {}).get("next_cursor") or None
    return Page(messages, cursor)
