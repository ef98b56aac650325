"""A database made by a version before replies were recorded by message (`answered_ts`) gets
the column at start, keeps its conversations, and records replies from then on; on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.conversations import Conversations
from memory.db import create_tables, make_engine
from tests.conftest import postgres_schema

OLDER_TABLE = (
    "CREATE TABLE conversations (id VARCHAR(64) PRIMARY KEY, team_id VARCHAR(32), "
    "channel_id VARCHAR(32), thread_ts VARCHAR(32), created_at TIMESTAMP WITH TIME ZONE, "
    "last_activity_at TIMESTAMP WITH TIME ZONE, bot_replied BOOLEAN, "
    "UNIQUE (team_id, channel_id, thread_ts))"
)
OLDER_ROW = (
    "INSERT INTO conversations VALUES ('conv-old', 'T1', 'C1', '1700000000.000100', "
    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, TRUE)"
)


async def upgraded(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(OLDER_TABLE))
        await connection.execute(text(OLDER_ROW))
    await create_tables(engine)
    await create_tables(engine)  # a second start finds the column there
    conversations = Conversations(engine)
    old = await conversations.find("T1", "C1", "1700000000.000100")
    assert old is not None and old.bot_replied and old.answered_ts is None
    assert not await conversations.answered("T1", "C1", "1700000000.000100", "1700000000.000100")
    await conversations.record_reply("conv-old", "1700000050.000200")
    assert await conversations.answered("T1", "C1", "1700000000.000100", "1700000050.000200")
    assert not await conversations.answered("T1", "C1", "1700000000.000100", "1700000090.000300")


async def test_an_older_sqlite_database_gets_the_column(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'lore.db'}")
    try:
        await upgraded(engine)
    finally:
        await engine.dispose()


async def test_an_older_postgresql_database_gets_the_column() -> None:
    async with postgres_schema("upgrade_") as engine:
        await upgraded(engine)
