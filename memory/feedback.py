"""Feedback on Lore's replies: one vote per user per reply; a second vote replaces the first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, Insert, String, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from memory.db import Base, utcnow


class Verdict(StrEnum):
    """What a user thought of a reply."""

    HELPFUL = "helpful"
    NOT_HELPFUL = "not_helpful"


class FeedbackRow(Base):
    """A user's vote on one reply; the primary key allows one per user and reply."""

    __tablename__ = "reply_feedback"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reply_ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    voted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class Vote:
    """One press of a feedback button."""

    team_id: str
    channel_id: str
    reply_ts: str
    user_id: str
    verdict: Verdict
    conversation_id: str | None = None


class Feedback:
    """Stores votes on replies and counts them per workspace."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record(self, vote: Vote) -> Verdict | None:
        """Store `vote`, replacing the user's earlier vote on that reply; the earlier verdict."""
        async with self._sessions() as session, session.begin():
            earlier = await session.scalar(
                select(FeedbackRow.verdict).where(
                    FeedbackRow.team_id == vote.team_id,
                    FeedbackRow.channel_id == vote.channel_id,
                    FeedbackRow.reply_ts == vote.reply_ts,
                    FeedbackRow.user_id == vote.user_id,
                )
            )
            await session.execute(self._upsert(vote))
        return Verdict(earlier) if earlier else None

    async def verdict(
        self, team_id: str, channel_id: str, reply_ts: str, user_id: str
    ) -> Verdict | None:
        """The user's current vote on one reply, if any."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(FeedbackRow.verdict).where(
                    FeedbackRow.team_id == team_id,
                    FeedbackRow.channel_id == channel_id,
                    FeedbackRow.reply_ts == reply_ts,
                    FeedbackRow.user_id == user_id,
                )
            )
        return Verdict(found) if found else None

    async def conversation_votes(self, conversation_id: str) -> set[tuple[str, Verdict]]:
        """(user, verdict) of every vote on replies in one conversation."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(FeedbackRow.user_id, FeedbackRow.verdict).where(
                    FeedbackRow.conversation_id == conversation_id
                )
            )
            return {(user_id, Verdict(verdict)) for user_id, verdict in rows}

    async def counts(self, team_id: str) -> tuple[int, int]:
        """(helpful, not helpful) votes of a workspace."""
        helpful = func.sum(case((FeedbackRow.verdict == Verdict.HELPFUL.value, 1), else_=0))
        unhelpful = func.sum(case((FeedbackRow.verdict == Verdict.NOT_HELPFUL.value, 1), else_=0))
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(helpful, unhelpful).where(FeedbackRow.team_id == team_id)
                )
            ).one()
        return int(row[0] or 0), int(row[1] or 0)

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(FeedbackRow).where(FeedbackRow.team_id == team_id))

    def _upsert(self, vote: Vote) -> Insert:
        values = {
            "team_id": vote.team_id,
            "channel_id": vote.channel_id,
            "reply_ts": vote.reply_ts,
            "user_id": vote.user_id,
            "conversation_id": vote.conversation_id,
            "verdict": vote.verdict.value,
            "voted_at": utcnow(),
        }
        changed = {k: values[k] for k in ("conversation_id", "verdict", "voted_at")}
        keys = ["team_id", "channel_id", "reply_ts", "user_id"]
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            pg = postgresql.insert(FeedbackRow).values(values)
            return pg.on_conflict_do_update(index_elements=keys, set_=changed)
        if dialect == "sqlite":
            lite = sqlite.insert(FeedbackRow).values(values)
            return lite.on_conflict_do_update(index_elements=keys, set_=changed)
        raise NotImplementedError(f"feedback needs SQLite or PostgreSQL, not {dialect}")
