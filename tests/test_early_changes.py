"""An edit or deletion that reaches one Lore process before another process has stored its
message still applies: the early change waits in Redis for the message's batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.ingest import Ingest
from memory.archive import Archive, ArchivedMessage
from memory.early_changes import Change, MessageId, RedisEarlyChanges
from tests.conftest import new_team
from tests.harness import eventually
from tests.processes import RedisServer


@pytest.fixture
def archive(sqlite_archive: Archive) -> Archive:
    return sqlite_archive


def message(team: str, n: int, text: str) -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team,
        channel_id="C1",
        channel_type="channel",
        ts=f"1700000000.{n:06d}",
        text=text,
        user_id="U1",
        thread_ts=None,
        permalink=None,
    )


async def test_changes_received_by_one_process_apply_to_messages_another_stores(
    archive: Archive, redis_client: Redis
) -> None:
    team = new_team()
    # two processes: each its own batches, one archive and one Redis between them
    storing = Ingest(archive, linger=0.3, early=RedisEarlyChanges(redis_client))
    changing = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    edited = message(team, 1, "the offsite is in Lisbon")
    deleted = message(team, 2, "the acquisition price is 40M, keep it quiet")
    kept = message(team, 3, "the deploy freeze starts Friday")
    adds = [asyncio.create_task(storing.add(m)) for m in (edited, deleted, kept)]

    async def accepted() -> bool:  # waiting for their batch
        return storing.pending == 3

    await eventually(accepted)
    await changing.update_text(team, "C1", edited.ts, "the offsite is in Porto")
    await changing.delete(team, "C1", deleted.ts)
    await asyncio.gather(*adds)

    stored = await archive.get(team, "C1", edited.ts)
    assert stored is not None and stored.text == "the offsite is in Porto"
    assert await archive.get(team, "C1", deleted.ts) is None
    assert await archive.count(team) == 2
    early = RedisEarlyChanges(redis_client)
    assert await early.take([(team, "C1", m.ts) for m in (edited, deleted, kept)]) == {}


class ChangeAfterFirstLook(RedisEarlyChanges):
    """The storing process's view of Redis: right after its batch's first look for changes,
    the other process's change runs to its end (before the batch is stored)."""

    def __init__(self, redis: Redis, change: Callable[[], Awaitable[None]]) -> None:
        super().__init__(redis)
        self._change: Callable[[], Awaitable[None]] | None = change

    async def take(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        taken = await super().take(messages)
        if self._change is not None:
            change, self._change = self._change, None
            await change()
        return taken


async def test_a_change_between_a_batchs_first_look_and_its_store_still_applies(
    archive: Archive, redis_client: Redis
) -> None:
    team = new_team()
    changing = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    edited, deleted = message(team, 1, "lunch at noon"), message(team, 2, "the door code is 4411")

    async def change() -> None:
        await changing.update_text(team, "C1", edited.ts, "lunch at one")
        await changing.delete(team, "C1", deleted.ts)

    storing = Ingest(archive, linger=0.0, early=ChangeAfterFirstLook(redis_client, change))
    await asyncio.gather(storing.add(edited), storing.add(deleted))
    stored = await archive.get(team, "C1", edited.ts)
    assert stored is not None and stored.text == "lunch at one"
    assert await archive.get(team, "C1", deleted.ts) is None
    assert await archive.count(team) == 1


class StoreBeforeKeep(RedisEarlyChanges):
    """The changing process's view of Redis: just before it keeps its change, the other
    process stores the message's batch to the end (and finds no change to apply)."""

    def __init__(self, redis: Redis, store: Callable[[], Awaitable[None]]) -> None:
        super().__init__(redis)
        self._store: Callable[[], Awaitable[None]] | None = store

    async def keep(self, message: MessageId, change: Change) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store()
        await super().keep(message, change)


async def test_a_batch_stored_between_a_changes_first_try_and_its_keeping_gets_it(
    archive: Archive, redis_client: Redis
) -> None:
    team = new_team()
    storing = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    edited = message(team, 1, "standup moves to 9:30")
    changing = Ingest(
        archive, linger=0.0, early=StoreBeforeKeep(redis_client, lambda: storing.add(edited))
    )
    await changing.update_text(team, "C1", edited.ts, "standup moves to 10:00")
    stored = await archive.get(team, "C1", edited.ts)
    assert stored is not None and stored.text == "standup moves to 10:00"


async def test_an_early_change_is_taken_once(redis_client: Redis) -> None:
    first, second = RedisEarlyChanges(redis_client), RedisEarlyChanges(redis_client)
    team = new_team()
    await first.keep((team, "C1", "1.000001"), "new text")
    await first.keep((team, "C1", "1.000002"), None)
    await first.keep((team, "C1", "1.000002"), "a newer change wins")
    taken = await asyncio.gather(
        first.take([(team, "C1", "1.000001"), (team, "C1", "1.000002")]),
        second.take([(team, "C1", "1.000001"), (team, "C1", "1.000002")]),
    )
    merged = {**taken[0], **taken[1]}
    assert merged == {
        (team, "C1", "1.000001"): "new text",
        (team, "C1", "1.000002"): "a newer change wins",
    }
    assert len(taken[0]) + len(taken[1]) == 2
    await first.keep((team, "C1", "1.000003"), None)
    assert await second.take([(team, "C1", "1.000003")]) == {(team, "C1", "1.000003"): None}


async def test_without_redis_a_batch_finds_no_changes_and_is_still_stored(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0")
    team = new_team()
    ingest = Ingest(archive, linger=0.0, early=RedisEarlyChanges(unreachable))
    try:
        await ingest.add(message(team, 1, "stored even though Redis is down"))
        assert ingest.rechecking == 1  # its early edits are looked for again later
        await ingest.close()
    finally:
        await unreachable.aclose()
    assert await archive.count(team) == 1
    assert "could not look for early edits" in caplog.text


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_early_changes_of_a_batch_stored_while_redis_is_away_apply_when_it_is_back(
    archive: Archive, own_redis: RedisServer
) -> None:
    team = new_team()
    redis = Redis.from_url(own_redis.url)
    ingest = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis), recheck_delay=0.05)
    edited = message(team, 1, "the release is on Monday")
    deleted = message(team, 2, "the staging password is hunter2")
    try:
        await ingest.update_text(team, "C1", edited.ts, "the release is on Tuesday")
        await ingest.delete(team, "C1", deleted.ts)
        await asyncio.to_thread(own_redis.stop)
        await asyncio.gather(ingest.add(edited), ingest.add(deleted))
        assert ingest.rechecking == 2
        await asyncio.to_thread(own_redis.start)

        async def looked_again() -> bool:
            return ingest.rechecking == 0

        await eventually(looked_again)
        stored = await archive.get(team, "C1", edited.ts)
        assert stored is not None and stored.text == "the release is on Tuesday"
        assert await archive.get(team, "C1", deleted.ts) is None
        assert await RedisEarlyChanges(redis).take([(team, "C1", edited.ts)]) == {}
    finally:
        await ingest.close()
        await redis.aclose()


async def test_a_change_applied_while_redis_is_away_wins_over_the_early_one_found_later(
    archive: Archive, own_redis: RedisServer
) -> None:
    team = new_team()
    redis = Redis.from_url(own_redis.url)
    ingest = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis), recheck_delay=0.05)
    superseded = message(team, 1, "retro at 3pm")
    control = message(team, 2, "demo at 4pm")
    try:
        await ingest.update_text(team, "C1", superseded.ts, "retro at 2pm")
        await ingest.update_text(team, "C1", control.ts, "demo at 5pm")
        await asyncio.to_thread(own_redis.stop)
        await asyncio.gather(ingest.add(superseded), ingest.add(control))
        await ingest.update_text(team, "C1", superseded.ts, "retro at 1pm")  # the later change
        await asyncio.to_thread(own_redis.start)

        async def looked_again() -> bool:
            return ingest.rechecking == 0

        await eventually(looked_again)
        later = await archive.get(team, "C1", superseded.ts)
        assert later is not None and later.text == "retro at 1pm"
        found = await archive.get(team, "C1", control.ts)
        assert found is not None and found.text == "demo at 5pm"
    finally:
        await ingest.close()
        await redis.aclose()
