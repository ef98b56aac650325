"""The engines' pools: a burst of statements past a pool's size waits for a connection rather
than opening (and then closing) more, each of which is set up anew (a thread and a file handle
for SQLite; a handshake and a server process for PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.conversations import Conversations
from memory.db import POSTGRES_POOL, SQLITE_POOL, create_tables, make_engine
from tests.conftest import new_team, postgres_engine_or_skip


async def connections_a_burst_opens(engine: AsyncEngine, team: str, burst: int) -> int:
    """Connections the engine opens while `burst` look-ups run at once, three times over."""
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda connection, _record: opened.append(1))
    await create_tables(engine)
    conversations = Conversations(engine)
    threads = [f"{n}.000100" for n in range(burst)]
    for thread_ts in threads:
        await conversations.open(team, "C1", thread_ts)
    for _ in range(3):
        found = await asyncio.gather(
            *(conversations.find(team, "C1", thread_ts) for thread_ts in threads)
        )
        assert [c.thread_ts for c in found if c] == threads  # every statement answered
    return len(opened)


async def test_a_burst_past_the_sqlite_pool_opens_no_connection_beyond_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'lore.db'}")
    try:
        assert 1 <= await connections_a_burst_opens(engine, "T1", 3 * SQLITE_POOL) <= SQLITE_POOL
    finally:
        await engine.dispose()


async def test_a_burst_past_the_postgres_pool_opens_no_connection_beyond_it() -> None:
    engine = await postgres_engine_or_skip()
    try:
        opened = await connections_a_burst_opens(engine, new_team(), 3 * POSTGRES_POOL)
        assert 1 <= opened <= POSTGRES_POOL
    finally:
        await engine.dispose()
