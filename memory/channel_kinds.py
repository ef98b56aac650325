"""What Slack last said about an archived channel: its current kind, or that it was deleted.

Each archived message carries the kind of its channel (channel, group, im, mpim). When a channel
is made private or public, or deleted, that word is recorded here, so that every later write of
the channel's messages (a live message with a stale hint, a backfill page read before the change,
an import from an older export) takes the current kind, and a deleted channel's messages are
never written again (a channel id is never reused).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.schema_lock import lock_schema

DELETED = None
"""What `ChannelKinds.of` gives for a deleted channel."""

_metadata = MetaData()
kinds = Table(
    "archive_channel_kinds",
    _metadata,
    Column("team_id", String, primary_key=True),
    Column("channel_id", String, primary_key=True),
    Column("channel_type", String, nullable=False),
    Column("deleted", Boolean, nullable=False),
)
_OF = select(kinds.c.channel_id, kinds.c.channel_type, kinds.c.deleted).where(
    kinds.c.team_id == bindparam("team_id"),
    kinds.c.channel_id.in_(bindparam("channel_ids", expanding=True)),
)
"""Read for every archive batch: built once."""


class ChannelKinds:
    """The `archive_channel_kinds` table, in the archive's SQL database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    async def open(cls, engine: AsyncEngine) -> ChannelKinds:
        """The record, its table created if missing (safe from several processes)."""
        record = cls(engine)
        async with engine.begin() as connection:
            await lock_schema(connection)
            await connection.run_sync(_metadata.create_all, checkfirst=True)
        return record

    async def record(self, team_id: str, channel_id: str, channel_type: str) -> None:
        """The channel is now of this kind."""
        await self._upsert(team_id, channel_id, channel_type, deleted=False)

    async def record_deleted(self, team_id: str, channel_id: str) -> None:
        """The channel was deleted in Slack."""
        await self._upsert(team_id, channel_id, "", deleted=True)

    async def of(self, team_id: str, channel_ids: Iterable[str]) -> dict[str, str | None]:
        """The recorded channels among channel_ids: their kind, or DELETED (None)."""
        wanted = sorted(set(channel_ids))
        if not wanted:
            return {}
        async with self._engine.connect() as connection:
            rows = await connection.execute(_OF, {"team_id": team_id, "channel_ids": wanted})
            return {row[0]: DELETED if row[2] else row[1] for row in rows}

    async def delete_team(self, team_id: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(delete(kinds).where(kinds.c.team_id == team_id))

    async def _upsert(self, team_id: str, channel_id: str, kind: str, *, deleted: bool) -> None:
        insert = postgresql.insert(kinds) if self._postgres else sqlite.insert(kinds)
        statement = insert.values(
            team_id=team_id, channel_id=channel_id, channel_type=kind, deleted=deleted
        ).on_conflict_do_update(
            index_elements=[kinds.c.team_id, kinds.c.channel_id],
            set_={"channel_type": kind, "deleted": deleted},
        )
        async with self._engine.begin() as connection:
            await connection.execute(statement)
