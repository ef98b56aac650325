"""Channels an admin excluded from the archive: their messages are neither kept nor read back.

Checked for every incoming message, so each workspace's set is cached for `ttl` seconds and
read by one query at a time (a burst of messages arriving as the cache expires waits for that one
read instead of each making its own); a change made by this process is seen at once, one made by
another process within `ttl`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from memory.db import Base, utcnow

CACHE_SECONDS = 30.0


class ExcludedChannel(Base):
    """A channel kept out of the archive, and who excluded it."""

    __tablename__ = "excluded_channels"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Exclusions:
    """Reads and writes the `excluded_channels` table (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, ttl: float = CACHE_SECONDS) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._ttl = ttl
        self._cache: dict[str, tuple[frozenset[str], float]] = {}
        self._loading: dict[str, asyncio.Task[frozenset[str]]] = {}

    async def channels(self, team_id: str) -> frozenset[str]:
        """The workspace's excluded channels (cached for `ttl` seconds)."""
        cached = self._cache.get(team_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        loading = self._loading.get(team_id)
        if loading is None:
            loading = asyncio.create_task(self._load(team_id), name="exclusions")
            self._loading[team_id] = loading
        return await asyncio.shield(loading)

    async def _load(self, team_id: str) -> frozenset[str]:
        """Read the set; cache it unless a change made meanwhile (`_forget`) dropped this read."""
        this = asyncio.current_task()
        try:
            async with self._sessions() as session:
                rows = await session.scalars(
                    select(ExcludedChannel.channel_id).where(ExcludedChannel.team_id == team_id)
                )
                found = frozenset(rows)
            if self._loading.get(team_id) is this:
                self._cache[team_id] = (found, time.monotonic() + self._ttl)
            return found
        finally:
            if self._loading.get(team_id) is this:
                del self._loading[team_id]

    async def halt_team(self, team_id: str) -> None:
        """Drop what this process caches of the workspace (it is being forgotten)."""
        self._forget(team_id)

    def resume_team(self, team_id: str) -> None:
        """Nothing to do: the set is read again when next needed."""

    def _forget(self, team_id: str) -> None:
        """Drop the cached set and any read in flight, which may predate a change."""
        self._cache.pop(team_id, None)
        self._loading.pop(team_id, None)

    async def is_excluded(self, team_id: str, channel_id: str) -> bool:
        """Whether messages of this channel must stay out of the archive."""
        return channel_id in await self.channels(team_id)

    async def exclude(self, team_id: str, channel_id: str, user_id: str | None = None) -> None:
        """Exclude a channel (idempotent)."""
        async with self._sessions() as session:
            session.add(ExcludedChannel(team_id=team_id, channel_id=channel_id, user_id=user_id))
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
        self._forget(team_id)

    async def include(self, team_id: str, channel_id: str) -> None:
        """Archive the channel's messages again from now on."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(ExcludedChannel).where(
                    ExcludedChannel.team_id == team_id, ExcludedChannel.channel_id == channel_id
                )
            )
        self._forget(team_id)

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(ExcludedChannel).where(ExcludedChannel.team_id == team_id))
        self._forget(team_id)
