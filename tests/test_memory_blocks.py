"""Memory blocks: every version kept, edits serialised by a lock and checked by version."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.blocks import MemoryBlocks, MemoryScope, ScopeError, scoped_label
from memory.edits import EditError, Insert, Replace, Rethink
from memory.locks import LocalLocks, RedisLocks, WorkspaceLocks
from tests.conftest import new_team

EVERYTHING = MemoryScope.everything()


async def test_defaults_exist_at_version_one(sqlite_engine: AsyncEngine) -> None:
    blocks = MemoryBlocks(sqlite_engine, LocalLocks(), char_limit=500)
    team = new_team()
    current = await blocks.current(team, EVERYTHING)
    assert [b.label for b in current] == ["persona", "org"]
    assert all(b.version == 1 and b.char_limit == 500 for b in current)


async def test_edit_keeps_history_with_origin(sqlite_engine: AsyncEngine) -> None:
    blocks = MemoryBlocks(sqlite_engine, LocalLocks())
    team = new_team()
    result = await blocks.edit(
        team,
        "org",
        Insert("Deploys freeze on Fridays."),
        conversation_id="c1",
        user_id="U1",
        scope=EVERYTHING,
    )
    assert result.block.version == 2
    assert "+Deploys freeze on Fridays." in result.diff
    await blocks.edit(
        team, "org", Replace("Fridays", "Thursdays"), conversation_id="c2", scope=EVERYTHING
    )
    history = await blocks.history(team, "org", EVERYTHING)
    assert [(b.version, b.operation, b.conversation_id) for b in history] == [
        (1, "create", None),
        (2, "insert", "c1"),
        (3, "replace", "c2"),
    ]
    assert history[1].user_id == "U1"
    assert (await blocks.get(team, "org", EVERYTHING)).value == "Deploys freeze on Thursdays."  # type: ignore[union-attr]


async def test_failed_edit_writes_nothing(sqlite_engine: AsyncEngine) -> None:
    blocks = MemoryBlocks(sqlite_engine, LocalLocks())
    team = new_team()
    with pytest.raises(EditError, match="not found"):
        await blocks.edit(team, "org", Replace("nope", "x"), scope=EVERYTHING)
    with pytest.raises(EditError, match="no memory block"):
        await blocks.edit(team, "secrets", Insert("x"), scope=EVERYTHING)
    assert [b.version for b in await blocks.history(team, "org", EVERYTHING)] == [1]


async def test_50_concurrent_inserts_under_redis_lock(
    any_engine: AsyncEngine, redis_client: aioredis.Redis
) -> None:
    blocks = MemoryBlocks(any_engine, RedisLocks(redis_client))
    team = new_team()
    await blocks.current(team, EVERYTHING)
    await asyncio.gather(
        *(
            blocks.edit(
                team, "org", Insert(f"fact {i}"), conversation_id=f"conv-{i}", scope=EVERYTHING
            )
            for i in range(50)
        )
    )
    history = await blocks.history(team, "org", EVERYTHING)
    assert [b.version for b in history] == list(range(1, 52))
    assert sorted(history[-1].value.splitlines()) == sorted(f"fact {i}" for i in range(50))


class NoLocks:
    """Stands in for an expired lock: no mutual exclusion at all."""

    def hold(self, team_id: str) -> asyncio.Lock:
        del team_id
        return _NullLock()


class _NullLock(asyncio.Lock):
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_version_check_saves_edits_even_without_the_lock(any_engine: AsyncEngine) -> None:
    unlocked: WorkspaceLocks = NoLocks()  # type: ignore[assignment]
    blocks = MemoryBlocks(any_engine, unlocked)
    team = new_team()
    await blocks.current(team, EVERYTHING)
    await asyncio.gather(
        *(blocks.edit(team, "org", Insert(f"line {i}"), scope=EVERYTHING) for i in range(10))
    )
    history = await blocks.history(team, "org", EVERYTHING)
    assert [b.version for b in history] == list(range(1, 12))
    assert len(history[-1].value.splitlines()) == 10


def conversation_scope(label: str) -> MemoryScope:
    """What a private conversation reads and writes: persona, org and its own block."""
    return MemoryScope(frozenset({"persona", "org", label}), frozenset({label}))


WORKSPACE = MemoryScope(frozenset({"persona", "org"}), frozenset({"org"}))


async def test_scoped_block_is_seen_only_with_its_scope(sqlite_engine: AsyncEngine) -> None:
    blocks = MemoryBlocks(sqlite_engine, LocalLocks())
    team = new_team()
    private = scoped_label("C0LEADS")
    leads = conversation_scope(private)
    assert [b.label for b in await blocks.current(team, leads)] == ["persona", "org", private]
    result = await blocks.edit(team, private, Insert("Reorg announced on the 3rd."), scope=leads)
    assert result.block.version == 2
    assert [b.label for b in await blocks.current(team, WORKSPACE)] == ["persona", "org"]
    other = await blocks.current(team, conversation_scope(scoped_label("D0BOB")))
    assert all("Reorg" not in b.value for b in other)
    org = await blocks.get(team, "org", WORKSPACE)
    assert org is not None and org.value == ""
    # the operator's scope sees every block
    assert private in [b.label for b in await blocks.current(team, EVERYTHING)]


async def test_labels_outside_the_scope_are_refused_and_never_created(
    sqlite_engine: AsyncEngine,
) -> None:
    blocks = MemoryBlocks(sqlite_engine, LocalLocks())
    team = new_team()
    leads = scoped_label("C0LEADS")
    await blocks.edit(
        team, leads, Insert("Prices rise in October."), scope=conversation_scope(leads)
    )
    with pytest.raises(ScopeError):
        await blocks.edit(team, leads, Rethink(""), scope=WORKSPACE)
    with pytest.raises(ScopeError):
        await blocks.get(team, leads, WORKSPACE)
    with pytest.raises(ScopeError):
        await blocks.history(team, leads, conversation_scope(scoped_label("D0BOB")))
    with pytest.raises(ScopeError):  # a conversation's scope does not write org
        await blocks.edit(team, "org", Insert("x"), scope=conversation_scope(leads))
    unnamed = scoped_label("C0NEW")
    with pytest.raises(ScopeError):
        await blocks.edit(team, unnamed, Insert("x"), scope=WORKSPACE)
    assert await blocks.history(team, unnamed, EVERYTHING) == []
    kept = await blocks.get(team, leads, EVERYTHING)
    assert kept is not None and kept.value == "Prices rise in October."


async def test_removing_most_lines_needs_a_scope_that_may_cut(sqlite_engine: AsyncEngine) -> None:
    blocks = MemoryBlocks(sqlite_engine, LocalLocks())
    team = new_team()
    await blocks.edit(team, "org", Insert("one\ntwo\nthree\nfour"), scope=WORKSPACE)
    await blocks.edit(team, "org", Replace("two\n", ""), scope=WORKSPACE)  # 1 of 4: fine
    with pytest.raises(ScopeError, match="more than half"):
        await blocks.edit(team, "org", Replace("one\nthree\n", ""), scope=WORKSPACE)
    admin = MemoryScope(WORKSPACE.readable, WORKSPACE.writable, may_cut=True)
    await blocks.edit(team, "org", Replace("one\nthree\n", ""), scope=admin)
    assert [b.value for b in await blocks.history(team, "org", WORKSPACE)][-1] == "four"
