"""Thread summaries: the older part of a long thread, condensed, keyed by its thread.

A summary belongs to one thread (team, channel, thread_ts) and is read only by name of that
thread: no call lists or searches summaries across threads. It records the messages it covers,
so the change of one of them (an edit, a deletion) finds and drops it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    DateTime,
    Integer,
    Row,
    String,
    Text,
    and_,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from memory.db import Base, utcnow


class SummaryRow(Base):
    """The stored summary of one thread's older messages."""

    __tablename__ = "thread_summaries"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    thread_ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    upto_ts: Mapped[str] = mapped_column(String(32))
    covers: Mapped[str] = mapped_column(Text)
    """The ts of every message the summary condenses, as a JSON list."""
    made_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)


@dataclass(frozen=True)
class ThreadSummary:
    """A thread's older messages condensed, up to and including the message `upto_ts`.

    `input_tokens` and `output_tokens` add up every model request that built it; `version`
    counts its updates (0: not stored yet).
    """

    team_id: str
    channel_id: str
    thread_ts: str
    text: str
    upto_ts: str
    covers: tuple[str, ...]
    made_at: datetime = field(default_factory=utcnow)
    input_tokens: int = 0
    output_tokens: int = 0
    version: int = 0


class ThreadSummaries:
    """Stores one summary per thread; a write replaces only the version it was based on."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get(self, team_id: str, channel_id: str, thread_ts: str) -> ThreadSummary | None:
        """The summary of this thread, or None (read by every follow-up turn: built once)."""
        params = {"team_id": team_id, "channel_id": channel_id, "thread_ts": thread_ts}
        async with self._engine.connect() as connection:
            row = (await connection.execute(_GET, params)).first()
        return _summary(row) if row is not None else None

    async def store(
        self, summary: ThreadSummary, based_on: ThreadSummary | None
    ) -> ThreadSummary | None:
        """Store `summary` if the thread's stored summary is still `based_on` (None: none is
        stored); what was stored, or None if another writer or an invalidation came first."""
        version = based_on.version + 1 if based_on is not None else 1
        values = {
            "text": summary.text,
            "upto_ts": summary.upto_ts,
            "covers": json.dumps(list(summary.covers)),
            "made_at": summary.made_at,
            "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens,
            "version": version,
        }
        async with self._sessions() as session:
            if based_on is None:
                session.add(
                    SummaryRow(
                        team_id=summary.team_id,
                        channel_id=summary.channel_id,
                        thread_ts=summary.thread_ts,
                        **values,
                    )
                )
                try:
                    await session.commit()
                except IntegrityError:
                    return None
                return replace(summary, version=version)
            result = await session.execute(
                update(SummaryRow)
                .where(
                    _key(summary.team_id, summary.channel_id, summary.thread_ts),
                    SummaryRow.version == based_on.version,
                    SummaryRow.upto_ts == based_on.upto_ts,
                )
                .values(**values)
            )
            await session.commit()
        stored = bool(result.rowcount)  # type: ignore[attr-defined]
        return replace(summary, version=version) if stored else None

    async def forget(self, team_id: str, channel_id: str, thread_ts: str) -> None:
        """Drop the thread's summary."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(SummaryRow).where(_key(team_id, channel_id, thread_ts)))

    async def message_changed(self, team_id: str, channel_id: str, ts: str) -> int:
        """A message was edited or deleted: drop every summary that covers it; how many."""
        dropped = 0
        async with self._sessions() as session, session.begin():
            rows = await session.execute(
                select(SummaryRow.thread_ts, SummaryRow.upto_ts, SummaryRow.covers).where(
                    SummaryRow.team_id == team_id,
                    SummaryRow.channel_id == channel_id,
                )
            )
            for thread_ts, upto_ts, covers in rows:
                if float(thread_ts) <= float(ts) <= float(upto_ts) and ts in json.loads(covers):
                    await session.execute(
                        delete(SummaryRow).where(_key(team_id, channel_id, thread_ts))
                    )
                    dropped += 1
        return dropped

    async def delete_channel(self, team_id: str, channel_id: str) -> None:
        """Drop the summaries of every thread of a channel (deleted, or kept out of the archive)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(SummaryRow).where(
                    SummaryRow.team_id == team_id, SummaryRow.channel_id == channel_id
                )
            )

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(SummaryRow).where(SummaryRow.team_id == team_id))


def _key(
    team_id: str | BindParameter[str],
    channel_id: str | BindParameter[str],
    thread_ts: str | BindParameter[str],
) -> ColumnElement[bool]:
    return and_(
        SummaryRow.team_id == team_id,
        SummaryRow.channel_id == channel_id,
        SummaryRow.thread_ts == thread_ts,
    )


_GET = select(SummaryRow.__table__).where(
    _key(bindparam("team_id"), bindparam("channel_id"), bindparam("thread_ts"))
)


def _summary(row: SummaryRow | Row[Any]) -> ThreadSummary:
    return ThreadSummary(
        team_id=row.team_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        text=row.text,
        upto_ts=row.upto_ts,
        covers=tuple(json.loads(row.covers)),
        made_at=row.made_at,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        version=row.version,
    )
