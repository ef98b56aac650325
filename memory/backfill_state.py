"""Backfill progress per channel: where reading a channel's history stopped, and how it went.

One row per (team, channel). The position is saved after every page, so a restart resumes
where it stopped: `cursor` is the history page in progress (None = the newest page), `thread_ts`
the thread of that page being read (None = the page's own messages come first) and
`replies_cursor` the next page of that thread's replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, Row, String, Text, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from memory.db import Base, utcnow

PENDING = "pending"
RUNNING = "running"
DONE = "done"


class BackfillRow(Base):
    """A channel's backfill: status, position and counts."""

    __tablename__ = "backfill_channels"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    latest: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    thread_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    replies_cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class Position:
    """Where reading a channel resumes (see the module docstring)."""

    latest: str | None = None
    cursor: str | None = None
    thread_ts: str | None = None
    replies_cursor: str | None = None


@dataclass(frozen=True)
class ChannelBackfill:
    """A channel's backfill as shown to people (App Home, CLI, logs)."""

    team_id: str
    channel_id: str
    status: str
    messages: int
    pages: int
    last_error: str | None
    position: Position
    updated_at: datetime
    finished_at: datetime | None


class BackfillState:
    """Reads and writes the `backfill_channels` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get(self, team_id: str, channel_id: str) -> ChannelBackfill | None:
        """Read by every follow-up turn (is the channel's archive complete?): built once."""
        params = {"team_id": team_id, "channel_id": channel_id}
        async with self._engine.connect() as connection:
            row = (await connection.execute(_GET, params)).first()
        return _view(row) if row else None

    async def request(self, team_id: str, channel_id: str) -> ChannelBackfill:
        """Make sure the channel has a row; a new one is pending. A done channel stays done."""
        found = await self.get(team_id, channel_id)
        if found is not None:
            return found
        async with self._sessions() as session:
            session.add(BackfillRow(team_id=team_id, channel_id=channel_id, status=PENDING))
            try:
                await session.commit()
            except IntegrityError:  # another caller created it first
                await session.rollback()
        created = await self.get(team_id, channel_id)
        assert created is not None
        return created

    async def restart(self, team_id: str, channel_id: str) -> None:
        """Read a channel again from its newest message (e.g. a re-join after leaving)."""
        await self._set(
            team_id,
            channel_id,
            status=PENDING,
            latest=None,
            cursor=None,
            thread_ts=None,
            replies_cursor=None,
            messages=0,
            pages=0,
            last_error=None,
            finished_at=None,
        )

    async def start(self, team_id: str, channel_id: str, latest: str) -> Position:
        """Mark the channel running; fixes its upper bound `latest` on the first start."""
        async with self._sessions() as session, session.begin():
            row = await session.get(BackfillRow, (team_id, channel_id))
            assert row is not None, "request() the channel first"
            row.status = RUNNING
            row.latest = row.latest or latest
            row.last_error = None
            row.updated_at = utcnow()
            return _position(row)

    async def advance(
        self, team_id: str, channel_id: str, position: Position | None, archived: int
    ) -> None:
        """Save the position after a page and count the messages it archived; None = done."""
        values: dict[str, object] = {
            "messages": BackfillRow.messages + archived,
            "pages": BackfillRow.pages + 1,
            "updated_at": utcnow(),
        }
        if position is None:
            values.update(status=DONE, cursor=None, thread_ts=None, replies_cursor=None)
            values["finished_at"] = utcnow()
        else:
            values.update(
                cursor=position.cursor,
                thread_ts=position.thread_ts,
                replies_cursor=position.replies_cursor,
            )
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(BackfillRow)
                .where(BackfillRow.team_id == team_id, BackfillRow.channel_id == channel_id)
                .values(**values)
            )

    async def pause(self, team_id: str, channel_id: str, error: str | None = None) -> None:
        """Back to pending (stopped or failed); the position is kept for the next run."""
        await self._set(team_id, channel_id, status=PENDING, last_error=error)

    async def unfinished(self, team_id: str) -> list[str]:
        """Channels of a workspace whose backfill is pending or was running, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(BackfillRow.channel_id)
                .where(BackfillRow.team_id == team_id, BackfillRow.status != DONE)
                .order_by(BackfillRow.created_at, BackfillRow.channel_id)
            )
            return list(rows)

    async def teams_unfinished(self) -> list[str]:
        """Workspaces with a channel whose backfill is not done."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(BackfillRow.team_id).where(BackfillRow.status != DONE).distinct()
            )
            return sorted(rows)

    async def status(self, team_id: str) -> list[ChannelBackfill]:
        """Every channel's backfill of a workspace, by channel id."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(BackfillRow)
                .where(BackfillRow.team_id == team_id)
                .order_by(BackfillRow.channel_id)
            )
            return [_view(row) for row in rows]

    async def delete_team(self, team_id: str) -> None:
        """Forget a workspace's backfills (uninstall)."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(BackfillRow).where(BackfillRow.team_id == team_id))

    async def _set(self, team_id: str, channel_id: str, **values: object) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(BackfillRow)
                .where(BackfillRow.team_id == team_id, BackfillRow.channel_id == channel_id)
                .values(updated_at=utcnow(), **values)
            )


BACKFILLS = BackfillRow.__table__
_GET = select(BACKFILLS).where(
    BACKFILLS.c.team_id == bindparam("team_id"), BACKFILLS.c.channel_id == bindparam("channel_id")
)


def _position(row: BackfillRow | Row[Any]) -> Position:
    return Position(row.latest, row.cursor, row.thread_ts, row.replies_cursor)


def _view(row: BackfillRow | Row[Any]) -> ChannelBackfill:
    return ChannelBackfill(
        team_id=row.team_id,
        channel_id=row.channel_id,
        status=row.status,
        messages=row.messages,
        pages=row.pages,
        last_error=row.last_error,
        position=_position(row),
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )
