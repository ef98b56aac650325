"""Channel types (channel, group, im, mpim), from the event or a cached conversations.info."""

from __future__ import annotations

import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

TTL_SECONDS = 300.0


class ChannelTypes:
    """Remembers each channel's type for a few minutes."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, float]] = {}

    async def of(self, client: AsyncWebClient, channel_id: str, hint: str | None = None) -> str:
        if hint:
            self._known[channel_id] = (hint, time.monotonic() + TTL_SECONDS)
            return hint
        known = self._known.get(channel_id)
        if known and known[1] > time.monotonic():
            return known[0]
        kind = await self._look_up(client, channel_id)
        self._known[channel_id] = (kind, time.monotonic() + TTL_SECONDS)
        return kind

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
