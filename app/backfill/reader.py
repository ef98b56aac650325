"""What the backfill needs from Slack (a port; `handlers.slack_history` implements it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Raw = dict[str, Any]

HISTORY = "conversations.history"
REPLIES = "conversations.replies"


@dataclass(frozen=True)
class Page:
    """One page of messages as Slack returns them, and the cursor of the next (None: last)."""

    messages: list[Raw]
    next_cursor: str | None


class ChannelReader(Protocol):
    """Reads one workspace's channels through the Web API (429s are retried after Retry-After)."""

    team_id: str

    async def history(
        self, channel_id: str, *, latest: str, cursor: str | None, limit: int
    ) -> Page:
        """A page of conversations.history, newest first, up to `latest` (exclusive)."""
        ...

    async def replies(
        self, channel_id: str, thread_ts: str, *, latest: str, cursor: str | None, limit: int
    ) -> Page:
        """A page of conversations.replies of one thread (it may repeat the parent)."""
        ...

    async def channel_type(self, channel_id: str) -> str:
        """channel, group, im or mpim."""
        ...

    async def author(self, raw: Raw) -> str | None:
        """The name of a message's author (a bot's name for bot messages)."""
        ...

    async def permalink(self, channel_id: str, ts: str, thread_ts: str | None) -> str | None:
        """The message's permalink."""
        ...

    async def member_channels(self) -> list[str]:
        """Every conversation the bot is a member of (users.conversations)."""
        ...
