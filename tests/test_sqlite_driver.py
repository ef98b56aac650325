"""Lore's SQLite connections (`memory.sqlite_driver`): a statement is one hand-off to the
connection's thread, a read ends without one, and transactions, errors and many-row statements
behave as they do through aiosqlite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.db import make_engine
from memory.sqlite_driver import HopConnection


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'lore.db'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
    yield engine
    await engine.dispose()


async def hand_offs(engine: AsyncEngine) -> list[object]:
    """Every function the pooled connection hands to its thread from now on, in order."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
    assert isinstance(driver, HopConnection)
    seen: list[object] = []
    handed = driver._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(fn)
        return await handed(fn, *args, **kwargs)

    driver._execute = counted  # type: ignore[method-assign]
    return seen


async def test_a_read_is_one_hand_off_and_ends_without_another(engine: AsyncEngine) -> None:
    seen = await hand_offs(engine)
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT 1, 'a' UNION SELECT 2, 'b'"))).all()
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b")]
    assert len(seen) == 1  # aiosqlite: cursor, execute, fetchall, close, then the rollback


async def test_a_write_is_one_hand_off_and_its_commit_another(engine: AsyncEngine) -> None:
    seen = await hand_offs(engine)
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO t VALUES ('a', 1)"))
    assert len(seen) == 2
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT v FROM t WHERE k = 'a'"))).scalar() == 1


async def test_a_write_rolled_back_is_not_kept(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("INSERT INTO t VALUES ('gone', 1)"))
        await connection.rollback()
        await connection.execute(text("INSERT INTO t VALUES ('kept', 2)"))
        await connection.commit()
    async with engine.connect() as connection:
        keys = (await connection.execute(text("SELECT k FROM t ORDER BY k"))).scalars().all()
    assert keys == ["kept"]


async def test_a_failed_statement_raises_and_leaves_the_connection_usable(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO t VALUES ('a', 1)"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES ('b', 2)"))
            await connection.execute(text("INSERT INTO t VALUES ('a', 3)"))
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT k, v FROM t ORDER BY k"))).all()
    assert [tuple(row) for row in rows] == [("a", 1)]  # the failed transaction's 'b' is gone


async def test_many_rows_written_at_once_are_all_kept_and_counted(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        result = await connection.execute(
            text("INSERT INTO t VALUES (:k, :v)"), [{"k": f"k{n}", "v": n} for n in range(50)]
        )
        assert result.rowcount == 50
        updated = await connection.execute(text("UPDATE t SET v = v + 1 WHERE v < 10"))
        assert updated.rowcount == 10
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT sum(v) FROM t"))).scalar() == 1235
