"""The excluded-channels cache: one read for a burst of checks, and no stale read kept."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from memory.exclusions import Exclusions


def count_reads(engine: AsyncEngine) -> list[str]:
    """SELECTs on excluded_channels the engine runs from now on (SQLAlchemy's own events)."""
    reads: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "excluded_channels" in statement:
            reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return reads


async def test_a_burst_of_checks_on_a_cold_cache_reads_once(sqlite_engine: AsyncEngine) -> None:
    exclusions = Exclusions(sqlite_engine)
    await exclusions.exclude("T1", "C9")
    reads = count_reads(sqlite_engine)
    answers = await asyncio.gather(*(exclusions.is_excluded("T1", f"C{i}") for i in range(50)))
    assert answers == [i == 9 for i in range(50)]
    assert len(reads) == 1
    assert await exclusions.is_excluded("T1", "C9")  # cached now
    assert len(reads) == 1


async def test_expired_cache_is_read_again_once(sqlite_engine: AsyncEngine) -> None:
    exclusions = Exclusions(sqlite_engine, ttl=0.0)
    reads = count_reads(sqlite_engine)
    await exclusions.is_excluded("T1", "C1")
    await asyncio.gather(*(exclusions.is_excluded("T1", "C1") for _ in range(20)))
    assert len(reads) == 2


async def test_a_change_made_during_a_read_is_seen(sqlite_engine: AsyncEngine) -> None:
    """A check made after `exclude` returns must not join (or cache) a read that began before."""
    exclusions = Exclusions(sqlite_engine)
    reached, release = asyncio.Event(), asyncio.Event()

    def hold_first_read(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # runs in SQLAlchemy's greenlet on the event loop, once the rows are read: await_only
        # suspends the read there
        if "excluded_channels" in statement and not reached.is_set():
            reached.set()
            await_only(release.wait())

    event.listen(sqlite_engine.sync_engine, "after_cursor_execute", hold_first_read)
    early = asyncio.create_task(exclusions.is_excluded("T1", "C1"))
    await asyncio.wait_for(reached.wait(), 10)
    await exclusions.exclude("T1", "C1")
    late = asyncio.create_task(exclusions.is_excluded("T1", "C1"))
    await asyncio.sleep(0)
    release.set()
    assert not await early  # asked before the change, answered from before it
    assert await late
    assert await exclusions.is_excluded("T1", "C1")  # the early read did not fill the cache
    await exclusions.include("T1", "C1")
    assert not await exclusions.is_excluded("T1", "C1")
