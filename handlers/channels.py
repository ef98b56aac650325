"""Channel types (channel, group, im, mpim), from the event or a cached conversations.info."""

from __future__ import annotations

import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

TTL_SECONDS = 300.0


class ChannelTypes:
    """Remembers each channel's type for a few minutes, by (team, channel)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[str, float]] = {}

    async def of(
        self, client: AsyncWebClient, team_id: str, channel_id: str, hint: str | None = None
    ) -> str:
        key = (team_id, channel_id)
        if hint:
            self._known[key] = (hint, time.monotonic() + TTL_SECONDS)
            return hint
        known = self._known.get(key)
        if known and known[1] > time.monotonic():
            return known[0]
        kind = await self._look_up(client, channel_id)
        self._known[key] = (kind, time.monotonic() + TTL_SECONDS)
        return kind

    def forget(self, team_id: str, channel_id: str) -> None:
        """Drop what is known of a channel (it was converted, shared, archived or deleted)."""
        self._known.pop((team_id, channel_id), None)

    async def _look_up(self, client: AsyncWebClient, channel_id: str) -> str:
        try:
            info = (await client.conversations_info(channel=channel_id))["channel"]
        except SlackApiError:
            return "im" if channel_id.startswith("D") else "group"
        if info.get("is_im"):
            return "im"
        if info.get("is_mpim"):
            return "mpim"
        return "group" if info.get("is_private") else "channel"
