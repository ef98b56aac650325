"""What a turn needs from the chat surface (Slack), as small protocols the core codes against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TurnRequest:
    """A message that Lore must answer, and where it was said."""

    team_id: str
    channel_id: str
    channel_type: str
    thread_ts: str
    ts: str
    user_id: str
    text: str


@dataclass(frozen=True)
class ThreadMessage:
    """One message of the thread's history, oldest first."""

    ts: str
    user_id: str | None
    text: str
    from_bot: bool


@dataclass(frozen=True)
class Source:
    """A message an answer used, shown as a link; where it is and what of it was quoted."""

    permalink: str
    title: str
    channel_id: str | None = None
    ts: str | None = None
    quoted: str = ""


@dataclass(frozen=True)
class PostedReply:
    """The reply as it landed in the thread, for the archive, and the messages it quoted."""

    ts: str
    text: str
    permalink: str | None
    sources: tuple[Source, ...] = ()


class Reply(Protocol):
    """A reply being written into the thread: streamed where the surface allows."""

    async def append(self, text: str) -> None: ...

    async def finish(self, sources: list[Source]) -> PostedReply | None: ...

    async def fail(self, message: str) -> None: ...


class Thread(Protocol):
    """The Slack thread a turn answers in."""

    async def history(self, upto_ts: str) -> list[ThreadMessage]: ...

    async def set_status(self, status: str) -> None: ...

    def open_reply(self) -> Reply: ...
