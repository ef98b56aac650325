"""The archive's records: a message as archived, search filters and hits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memory.notes import Note


@dataclass(frozen=True)
class ArchivedMessage:
    """One Slack message as archived."""

    team_id: str
    channel_id: str
    channel_type: str  # "channel" | "group" | "im" | "mpim"
    ts: str  # Slack ts, e.g. "1700000000.000100"; unique within a channel
    text: str
    user_id: str | None = None
    thread_ts: str | None = None  # None for a top-level message that has no replies
    permalink: str | None = None
    is_bot: bool = False
    user_name: str | None = None  # the author's name when archived, indexed with the text

    @classmethod
    def lore_reply(
        cls,
        team_id: str,
        channel_id: str,
        channel_type: str,
        ts: str,
        text: str,
        *,
        thread_ts: str,
        permalink: str | None,
    ) -> ArchivedMessage:
        """One of Lore's own replies: a bot message without a user (`from_lore`)."""
        return cls(
            team_id,
            channel_id,
            channel_type,
            ts,
            text,
            user_id=None,
            thread_ts=thread_ts,
            permalink=permalink,
            is_bot=True,
        )

    @property
    def from_lore(self) -> bool:
        """Whether this is one of Lore's own replies (other bots' messages have a user)."""
        return self.is_bot and self.user_id is None

    @property
    def key(self) -> str:
        """The record id: unique within a workspace."""
        return message_key(self.channel_id, self.ts)

    @property
    def thread_key(self) -> str:
        """The ts of the thread's parent: thread_ts for replies, the message's own ts otherwise."""
        return self.thread_ts or self.ts


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on a search; all given ones must hold."""

    channels: frozenset[str] | None = None  # None = all; an empty set matches nothing
    user_id: str | None = None
    after: float | None = None  # unix seconds, inclusive, against the message ts
    before: float | None = None  # unix seconds, exclusive


@dataclass(frozen=True)
class SearchHit:
    """A search result; score is the fused rank score (higher is better, comparable within
    one search only). A note found is a hit on its first source message still archived, with
    the note (`note`) beside it."""

    message: ArchivedMessage
    score: float
    note: Note | None = None


def indexed_text(message: ArchivedMessage) -> str:
    """What the dense index embeds: "Author: text", so a question naming a person finds what
    they said (as in a transcript), or the text alone when the author is unknown."""
    return f"{message.user_name}: {message.text}" if message.user_name else message.text


def message_key(channel_id: str, ts: str) -> str:
    """The record id of a message."""
    return f"{channel_id}:{ts}"


def clean_text(text: str) -> str:
    """text made storable everywhere: surrogate pairs joined, lone surrogates and NUL (which
    PostgreSQL cannot store) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
