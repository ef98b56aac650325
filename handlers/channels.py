"""What Slack says of a channel now: its type (channel, group, im, mpim) and whether it is shared
with another organisation, from the event or a conversations.info cached per workspace.

Channel events (made private, shared, deleted, ...) call `forget`, so the next look-up reads the
channel afresh; otherwise an answer is kept for TTL_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

TTL_SECONDS = 60.0


@dataclass(frozen=True)
class ChannelFacts:
    """A channel's type and, once looked up, whether it is shared with another organisation."""

    kind: str
    ext_shared: bool | None = None
    """None: not looked up (the type came from an event)."""


class ChannelTypes:
    """conversations.info answers by (team, channel), each remembered for TTL_SECONDS."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[ChannelFacts, float]] = {}
        self._outsiders: dict[tuple[str, str], tuple[bool, float]] = {}

    async def of(
        self, client: AsyncWebClient, team_id: str, channel_id: str, hint: str | None = None
    ) -> str:
        """The channel's type; `hint` (an event's `channel_type`) is taken as current."""
        if hint:
            known = self._fresh(team_id, channel_id)
            if known is None or known.kind != hint:
                self._remember(team_id, channel_id, ChannelFacts(hint))
            return hint
        return (await self.facts(client, team_id, channel_id)).kind

    async def facts(self, client: AsyncWebClient, team_id: str, channel_id: str) -> ChannelFacts:
        """The channel's type and external sharing, from conversations.info."""
        known = self._fresh(team_id, channel_id)
        if known is not None and known.ext_shared is not None:
            return known
        facts = await self._look_up(client, channel_id)
        self._remember(team_id, channel_id, facts)
        return facts

    async def has_outsiders(
        self, team_id: str, channel_id: str, check: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Whether the channel has a guest or another organisation's member: `check`'s answer,
        remembered for TTL_SECONDS."""
        known = self._outsiders.get((team_id, channel_id))
        if known and known[1] > time.monotonic():
            return known[0]
        found = await check()
        self._outsiders[(team_id, channel_id)] = (found, time.monotonic() + TTL_SECONDS)
        return found

    def forget(self, team_id: str, channel_id: str) -> None:
        """The channel changed (type, sharing, members, deleted): read it again on next use."""
        self._known.pop((team_id, channel_id), None)
        self._outsiders.pop((team_id, channel_id), None)

    def forget_outsiders(self, team_id: str) -> None:
        """Someone's standing changed (made a guest, joined): every channel's answer to "has
        outsiders" in the workspace is looked up again."""
        for key in [k for k in self._outsiders if k[0] == team_id]:
            del self._outsiders[key]

    def _fresh(self, team_id: str, channel_id: str) -> ChannelFacts | None:
        known = self._known.get((team_id, channel_id))
        return known[0] if known and known[1] > time.monotonic() else None

    def _remember(self, team_id: str, channel_id: str, facts: ChannelFacts) -> None:
        self._known[(team_id, channel_id)] = (facts, time.monotonic() + TTL_SECONDS)

    async def _look_up(self, client: AsyncWebClient, channel_id: str) -> ChannelFacts:
        """On failure: private, and shared (nothing is shown that the channel might not allow)."""
        try:
            info = (await client.conversations_info(channel=channel_id))["channel"]
        except SlackApiError:
            return ChannelFacts("im" if channel_id.startswith("D") else "group", ext_shared=True)
        shared = bool(info.get("is_ext_shared"))
        if info.get("is_im"):
            return ChannelFacts("im", shared)
        if info.get("is_mpim"):
            return ChannelFacts("mpim", shared)
        return ChannelFacts("group" if info.get("is_private") else "channel", shared)
