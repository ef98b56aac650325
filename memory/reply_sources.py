"""Which archived messages each of Lore's archived replies quoted, and what text it quoted.

A reply is recorded when it is archived. When a quoted message is deleted, or edited so that the
quoted text is gone, the replies that quoted it are found here and leave the archive too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Index, String, Text, and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from memory.db import Base


class ReplySourceRow(Base):
    """One message quoted by one of Lore's replies (all ids within one workspace)."""

    __tablename__ = "reply_sources"
    __table_args__ = (Index("reply_sources_source", "team_id", "source_channel", "source_ts"),)

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reply_channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    reply_ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    quoted: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class Quote:
    """A message a reply quoted, and the text it quoted ("" when unknown)."""

    channel_id: str
    ts: str
    quoted: str = ""


@dataclass(frozen=True)
class QuotingReply:
    """A reply of Lore's that quoted a given message."""

    channel_id: str
    ts: str
    quoted: str


class ReplySources:
    """Reads and writes the `reply_sources` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record(self, team_id: str, channel_id: str, ts: str, quotes: Sequence[Quote]) -> None:
        """The reply at (channel_id, ts) quoted these messages (replacing what was recorded)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ReplySourceRow).where(
                    ReplySourceRow.team_id == team_id,
                    ReplySourceRow.reply_channel == channel_id,
                    ReplySourceRow.reply_ts == ts,
                )
            )
            unique = {(q.channel_id, q.ts): q for q in quotes}
            session.add_all(
                ReplySourceRow(
                    team_id=team_id,
                    reply_channel=channel_id,
                    reply_ts=ts,
                    source_channel=q.channel_id,
                    source_ts=q.ts,
                    quoted=q.quoted,
                )
                for q in unique.values()
            )

    async def quoting(self, team_id: str, channel_id: str, ts: str) -> list[QuotingReply]:
        """The replies that quoted the message (channel_id, ts)."""
        query = select(
            ReplySourceRow.reply_channel, ReplySourceRow.reply_ts, ReplySourceRow.quoted
        ).where(
            ReplySourceRow.team_id == team_id,
            ReplySourceRow.source_channel == channel_id,
            ReplySourceRow.source_ts == ts,
        )
        async with self._sessions() as session:
            return [QuotingReply(*row) for row in await session.execute(query)]

    async def quoting_channel(self, team_id: str, channel_id: str) -> list[QuotingReply]:
        """The replies that quoted any message of the channel."""
        query = select(
            ReplySourceRow.reply_channel, ReplySourceRow.reply_ts, ReplySourceRow.quoted
        ).where(ReplySourceRow.team_id == team_id, ReplySourceRow.source_channel == channel_id)
        async with self._sessions() as session:
            return [QuotingReply(*row) for row in await session.execute(query)]

    async def forget_message(self, team_id: str, channel_id: str, ts: str) -> None:
        """Drop the rows of a message gone from the archive, as a reply and as a source."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ReplySourceRow).where(
                    ReplySourceRow.team_id == team_id,
                    or_(
                        and_(
                            ReplySourceRow.reply_channel == channel_id,
                            ReplySourceRow.reply_ts == ts,
                        ),
                        and_(
                            ReplySourceRow.source_channel == channel_id,
                            ReplySourceRow.source_ts == ts,
                        ),
                    ),
                )
            )

    async def forget_channel(self, team_id: str, channel_id: str) -> None:
        """Drop the rows of a channel gone from the archive, as replies and as sources."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ReplySourceRow).where(
                    ReplySourceRow.team_id == team_id,
                    or_(
                        ReplySourceRow.reply_channel == channel_id,
                        ReplySourceRow.source_channel == channel_id,
                    ),
                )
            )

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(ReplySourceRow).where(ReplySourceRow.team_id == team_id))
