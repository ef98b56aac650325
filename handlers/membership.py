"""Which conversations a person belongs to, from Slack, cached for a short time per workspace."""

from __future__ import annotations

import time

from slack_sdk.web.async_client import AsyncWebClient

TTL_SECONDS = 60.0
PRIVATE_TYPES = "private_channel,mpim,im"
EVERY_TYPE = "public_channel,private_channel,mpim,im"
MAX_PAGES = 20


class Memberships:
    """users.conversations per (team, user, types), remembered for a minute."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], tuple[frozenset[str], float]] = {}

    async def private_conversations(
        self, client: AsyncWebClient, team_id: str, user_id: str
    ) -> frozenset[str]:
        """Private channels, group DMs and DMs of `user_id` that Lore can see too."""
        return await self._conversations(client, team_id, user_id, PRIVATE_TYPES)

    async def every_conversation(
        self, client: AsyncWebClient, team_id: str, user_id: str
    ) -> frozenset[str]:
        """Every conversation `user_id` is a member of (public channels too) that Lore sees."""
        return await self._conversations(client, team_id, user_id, EVERY_TYPE)

    async def _conversations(
        self, client: AsyncWebClient, team_id: str, user_id: str, types: str
    ) -> frozenset[str]:
        key = (team_id, user_id, types)
        known = self._known.get(key)
        if known and known[1] > time.monotonic():
            return known[0]
        channels: set[str] = set()
        cursor: str | None = None
        for _page in range(MAX_PAGES):
            response = await client.users_conversations(
                user=user_id, types=types, limit=200, cursor=cursor
            )
            channels.update(channel["id"] for channel in response.get("channels") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        found = frozenset(channels)
        self._known[key] = (found, time.monotonic() + TTL_SECONDS)
        return found

    def forget_team(self, team_id: str) -> None:
        """Drop what is known of a workspace's members (a channel's privacy changed, so
        anyone's list of private conversations may have)."""
        for key in [k for k in self._known if k[0] == team_id]:
            del self._known[key]
