"""Reflection's saved state: how far it has read each channel and thread, its runs, its spend.

- `reflection_channels`: per channel, the position: every thread whose newest message is at or
  before it has been looked at (reflected, or left for a second new message). A thread with a
  message after it is looked at again.
- `reflection_threads`: per thread, the newest message reflection has read (`read_upto`), so
  no message is read twice; a thread sent back is read again whole: `reopens` counts the times
  it was sent back, `reopens_read` the count a reflection that read it whole had seen, so a
  thread sent back while a reflection of it is under way is read once more after it.
- `reflection_runs`: a reflection's operations, stored in the same transaction that moves the
  positions past its threads, then applied one by one (`applied` counts them), so a restart
  finishes a run instead of losing or repeating it.
- `reflection_usage`: model tokens spent per workspace and UTC day.

Messages are read from the archive's record (`memory.lexical`), in the same database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.dml import Insert

from memory.db import Base, utcnow
from memory.lexical import messages

APPLYING = "applying"
DONE = "done"


class ReflectionChannelRow(Base):
    __tablename__ = "reflection_channels"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReflectionThreadRow(Base):
    __tablename__ = "reflection_threads"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    thread_ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    read_upto: Mapped[float] = mapped_column(Float, default=0.0)
    reopens: Mapped[int] = mapped_column(Integer, default=0)
    reopens_read: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReflectionRunRow(Base):
    __tablename__ = "reflection_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default=APPLYING)
    scope: Mapped[str] = mapped_column(Text)
    operations: Mapped[str] = mapped_column(Text)
    applied: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


_REOPENED = ReflectionThreadRow.reopens > ReflectionThreadRow.reopens_read


class ReflectionUsageRow(Base):
    __tablename__ = "reflection_usage"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


@dataclass(frozen=True)
class ChannelTop:
    """A channel of the archive and the ts of its newest message."""

    channel_id: str
    channel_type: str
    newest: float


@dataclass(frozen=True)
class ThreadMark:
    """A thread's newest archived message and how far reflection has read it."""

    channel_id: str
    thread_ts: str
    newest: float
    read_upto: float
    reopens: int
    """Times the thread was sent back; more than a reflection has read: `reopened`."""
    reopens_read: int

    @property
    def reopened(self) -> bool:
        return self.reopens > self.reopens_read


@dataclass(frozen=True)
class ThreadRead:
    """A thread as one reflection read it: up to `read_upto` (a message ts)."""

    channel_id: str
    thread_ts: str
    read_upto: float
    reopens: int = 0
    """The times it had been sent back when it was read (see `ThreadMark`)."""


@dataclass(frozen=True)
class Run:
    """A reflection's operations, stored before they are applied."""

    id: str
    team_id: str
    scope: dict[str, Any]
    operations: list[dict[str, Any]]
    applied: int


class ReflectionState:
    """Reads and writes reflection's tables (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # What there is to read

    async def teams(self) -> list[str]:
        """Workspaces with archived messages."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(messages.c.team_id).distinct())
            return sorted(row[0] for row in rows)

    async def channels(self, team_id: str) -> list[ChannelTop]:
        """Every archived channel of a workspace with its newest message."""
        query = (
            select(messages.c.channel_id, messages.c.channel_type, func.max(messages.c.ts_num))
            .where(messages.c.team_id == team_id)
            .group_by(messages.c.channel_id, messages.c.channel_type)
        )
        async with self._engine.connect() as connection:
            tops: dict[str, ChannelTop] = {}
            for channel_id, channel_type, newest in await connection.execute(query):
                known = tops.get(channel_id)
                if known is None or newest > known.newest:
                    tops[channel_id] = ChannelTop(channel_id, channel_type, float(newest))
            return sorted(tops.values(), key=lambda top: top.channel_id)

    async def positions(self, team_id: str) -> dict[str, float]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(ReflectionChannelRow.channel_id, ReflectionChannelRow.position).where(
                    ReflectionChannelRow.team_id == team_id
                )
            )
            return {channel_id: float(position) for channel_id, position in rows}

    async def reopened_channels(self, team_id: str) -> set[str]:
        """Channels with a thread sent back to reflection."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ReflectionThreadRow.channel_id)
                .where(
                    ReflectionThreadRow.team_id == team_id,
                    _REOPENED,
                )
                .distinct()
            )
            return set(rows)

    async def threads_after(self, team_id: str, channel_id: str, after: float) -> list[ThreadMark]:
        """The channel's threads with a message after `after`, plus those sent back."""
        moved = (
            select(messages.c.thread_key)
            .where(
                messages.c.team_id == team_id,
                messages.c.channel_id == channel_id,
                messages.c.ts_num > after,
            )
            .distinct()
        )
        reopened = select(ReflectionThreadRow.thread_ts).where(
            ReflectionThreadRow.team_id == team_id,
            ReflectionThreadRow.channel_id == channel_id,
            _REOPENED,
        )
        newest = (
            select(messages.c.thread_key, func.max(messages.c.ts_num))
            .where(
                messages.c.team_id == team_id,
                messages.c.channel_id == channel_id,
                messages.c.thread_key.in_(moved.union(reopened)),
            )
            .group_by(messages.c.thread_key)
        )
        async with self._engine.connect() as connection:
            found = {key: float(ts) for key, ts in await connection.execute(newest)}
        marks = await self._marks(team_id, channel_id, list(found))
        return [
            ThreadMark(channel_id, key, ts, *marks.get(key, (0.0, 0, 0)))
            for key, ts in sorted(found.items(), key=lambda item: item[1])
        ]

    async def _marks(
        self, team_id: str, channel_id: str, thread_keys: Sequence[str]
    ) -> dict[str, tuple[float, int, int]]:
        found: dict[str, tuple[float, int, int]] = {}
        async with self._sessions() as session:
            for start in range(0, len(thread_keys), 400):
                rows = await session.execute(
                    select(
                        ReflectionThreadRow.thread_ts,
                        ReflectionThreadRow.read_upto,
                        ReflectionThreadRow.reopens,
                        ReflectionThreadRow.reopens_read,
                    ).where(
                        ReflectionThreadRow.team_id == team_id,
                        ReflectionThreadRow.channel_id == channel_id,
                        ReflectionThreadRow.thread_ts.in_(thread_keys[start : start + 400]),
                    )
                )
                found.update({key: (float(upto), n, read) for key, upto, n, read in rows})
        return found

    # Moving on

    async def advance(self, team_id: str, positions: dict[str, float]) -> None:
        """Move channel positions (never back)."""
        if not positions:
            return
        async with self._sessions() as session, session.begin():
            for channel_id, position in positions.items():
                await session.execute(self._position(team_id, channel_id, position))

    async def record_run(
        self,
        run: Run,
        threads: Iterable[ThreadRead],
    ) -> None:
        """Store a run's operations and move its threads past what it read, in one transaction."""
        async with self._sessions() as session, session.begin():
            session.add(
                ReflectionRunRow(
                    id=run.id,
                    team_id=run.team_id,
                    scope=json.dumps(run.scope),
                    operations=json.dumps(run.operations),
                    applied=run.applied,
                )
            )
            for thread in threads:
                await session.execute(self._read(run.team_id, thread))

    async def reopen(self, team_id: str, channel_id: str, thread_ts: str) -> None:
        """Send a thread back: its next reflection reads it whole."""
        values = {
            "team_id": team_id,
            "channel_id": channel_id,
            "thread_ts": thread_ts,
            "reopens": 1,
            "updated_at": utcnow(),
        }
        statement = self._insert(ReflectionThreadRow, values).on_conflict_do_update(
            index_elements=["team_id", "channel_id", "thread_ts"],
            set_={"reopens": ReflectionThreadRow.reopens + 1, "updated_at": utcnow()},
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)

    async def unfinished_runs(self, team_id: str) -> list[Run]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ReflectionRunRow)
                .where(ReflectionRunRow.team_id == team_id, ReflectionRunRow.status == APPLYING)
                .order_by(ReflectionRunRow.created_at)
            )
            return [
                Run(
                    row.id,
                    row.team_id,
                    json.loads(row.scope),
                    json.loads(row.operations),
                    row.applied,
                )
                for row in rows
            ]

    async def applied(self, run_id: str, count: int) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ReflectionRunRow).where(ReflectionRunRow.id == run_id).values(applied=count)
            )

    async def finish(self, run_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ReflectionRunRow)
                .where(ReflectionRunRow.id == run_id)
                .values(status=DONE, finished_at=utcnow())
            )

    async def runs(self, team_id: str) -> int:
        """Runs recorded for a workspace (finished or not)."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).where(ReflectionRunRow.team_id == team_id)
            )
            return int(count or 0)

    # Spend

    async def spend(self, team_id: str, day: str, tokens: int) -> int:
        """Add tokens to a workspace's spend of `day` (YYYY-MM-DD, UTC); the new total."""
        values = {"team_id": team_id, "day": day, "tokens": tokens}
        statement = self._insert(ReflectionUsageRow, values).on_conflict_do_update(
            index_elements=["team_id", "day"],
            set_={"tokens": ReflectionUsageRow.tokens + tokens},
        )
        async with self._sessions() as session, session.begin():
            await session.execute(statement)
        return await self.spent(team_id, day)

    async def spent(self, team_id: str, day: str) -> int:
        async with self._sessions() as session:
            tokens = await session.scalar(
                select(ReflectionUsageRow.tokens).where(
                    ReflectionUsageRow.team_id == team_id, ReflectionUsageRow.day == day
                )
            )
            return int(tokens or 0)

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions() as session, session.begin():
            for table in (
                ReflectionChannelRow,
                ReflectionThreadRow,
                ReflectionRunRow,
                ReflectionUsageRow,
            ):
                await session.execute(delete(table).where(table.team_id == team_id))

    def _position(self, team_id: str, channel_id: str, position: float) -> Insert:
        values = {
            "team_id": team_id,
            "channel_id": channel_id,
            "position": position,
            "updated_at": utcnow(),
        }
        return self._insert(ReflectionChannelRow, values).on_conflict_do_update(
            index_elements=["team_id", "channel_id"],
            set_={
                "position": func.max(ReflectionChannelRow.position, position)
                if not self._postgres
                else func.greatest(ReflectionChannelRow.position, position),
                "updated_at": utcnow(),
            },
        )

    def _read(self, team_id: str, thread: ThreadRead) -> Insert:
        values = {
            "team_id": team_id,
            "channel_id": thread.channel_id,
            "thread_ts": thread.thread_ts,
            "read_upto": thread.read_upto,
            "reopens_read": thread.reopens,
            "updated_at": utcnow(),
        }
        return self._insert(ReflectionThreadRow, values).on_conflict_do_update(
            index_elements=["team_id", "channel_id", "thread_ts"],
            set_={k: values[k] for k in ("read_upto", "reopens_read", "updated_at")},
        )

    @property
    def _postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def _insert(self, table: type[Base], values: dict[str, Any]) -> Any:
        if self._postgres:
            return postgresql.insert(table).values(values)
        return sqlite.insert(table).values(values)
