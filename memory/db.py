"""The durable store: SQLAlchemy 2 async engine and the tables Lore keeps (SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry

from memory.schema_lock import lock_schema
from memory.sqlite_driver import connector


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of Lore's tables."""


class BlockVersion(Base):
    """One version of a memory block; the primary key makes "write n+1 only once" a DB rule."""

    __tablename__ = "memory_block_versions"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    char_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    operation: Mapped[str] = mapped_column(String(32), default="create")


class ConversationRow(Base):
    """A Slack thread that Lore takes part in: (team, channel, thread) -> conversation id."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    bot_replied: Mapped[bool] = mapped_column(Boolean, default=False)
    answered_ts: Mapped[str | None] = mapped_column(String(32), nullable=True, default=None)
    """The message Lore last finished a reply to, recorded once the reply is posted."""


def _sqlite_pragmas(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SQLITE_POOL = 20
"""SQLite connections kept open, and no more: each is a thread and a file handle, set up anew, so
a connection opened past the pool for a busy moment and closed after it (an "overflow") costs
several statements' worth of CPU; callers past the pool wait for a free one instead."""

POSTGRES_POOL = 20
"""PostgreSQL connections kept open, and no more, for the same reason: a connection opened for a
busy moment costs a handshake, a server process and its settings, then is closed again."""

# PostgreSQL plans each statement for its parameters, never with a generic plan: asyncpg prepares
# every statement, and after five runs of one PostgreSQL may switch to a generic plan, which made
# the archive's full-text search 3x slower (p95 80 ms at 100,000 messages).
POSTGRES_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def make_engine(url: str) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL and a busy timeout so writers wait, not fail, and
    connections that hand a statement to their thread once (`memory.sqlite_driver`)."""
    if url.startswith("sqlite"):
        in_memory = make_url(url).database in (None, "", ":memory:")  # one shared connection
        pool = {} if in_memory else {"pool_size": SQLITE_POOL, "max_overflow": 0}
        engine = create_async_engine(url, async_creator=connector(url), **pool)
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=POSTGRES_POOL,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={"server_settings": dict(POSTGRES_SETTINGS)},
    )


ADDED_COLUMNS = (("conversations", "answered_ts", "VARCHAR(32)"),)
"""Columns added since their table was first created: (table, column, SQL type)."""


async def create_tables(engine: AsyncEngine) -> None:
    """Create missing tables, and add the columns an older version's tables lack
    (idempotent; safe when several processes start at once)."""
    async with engine.begin() as connection:
        await lock_schema(connection)
        await connection.run_sync(Base.metadata.create_all, checkfirst=True)
        for table, column, kind in ADDED_COLUMNS:
            if column not in await connection.run_sync(_column_names, table):
                await connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _column_names(connection: Connection, table: str) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns(table)}
