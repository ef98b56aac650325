"""An edit or deletion that reaches one Lore process before another process has stored its
message still applies: the early change waits in Redis for the message's batch. Changes apply
in Slack's order (their `event_ts`) whatever order they arrive in, in one process or several."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ingest import Ingest
from memory.archive import Archive, ArchivedMessage
from memory.early_changes import (
    Change,
    EarlyChanges,
    LocalEarlyChanges,
    MessageId,
    RedisEarlyChanges,
    SqlEarlyChanges,
)
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


class ChangeAfterFirstLook(RedisEarlyChanges):
    """The storing process's view of Redis: right after its batch's first look for changes,
    the other process's change runs to its end (before the batch is stored)."""

    def __init__(self, redis: Redis, change: Callable[[], Awaitable[None]]) -> None:
        super().__init__(redis)
        self._change: Callable[[], Awaitable[None]] | None = change

    async def newest(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        found = await super().newest(messages)
        if self._change is not None:
            change, self._change = self._change, None
            await change()
        return found


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


class StoreAfterKeep(RedisEarlyChanges):
    """The changing process's view of Redis: right after it keeps its change, the other
    process stores the message's batch to the end."""

    def __init__(self, redis: Redis, store: Callable[[], Awaitable[None]]) -> None:
        super().__init__(redis)
        self._store: Callable[[], Awaitable[None]] | None = store

    async def keep(self, message: MessageId, change: Change, version: str = "") -> Change:
        newest = await super().keep(message, change, version)
        if self._store is not None:
            store, self._store = self._store, None
            await store()
        return newest


async def test_a_batch_stored_between_a_changes_keeping_and_its_first_try_gets_it(
    archive: Archive, redis_client: Redis
) -> None:
    team = new_team()
    storing = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    edited = message(team, 1, "standup moves to 9:30")
    changing = Ingest(
        archive, linger=0.0, early=StoreAfterKeep(redis_client, lambda: storing.add(edited))
    )
    await changing.update_text(team, "C1", edited.ts, "standup moves to 10:00")
    stored = await archive.get(team, "C1", edited.ts)
    assert stored is not None and stored.text == "standup moves to 10:00"


@pytest.mark.parametrize("kind", ["redis", "local"])
async def test_the_newest_change_by_slacks_order_is_kept_whatever_order_it_comes_in(
    redis_client: Redis, kind: str
) -> None:
    first: EarlyChanges
    second: EarlyChanges
    if kind == "redis":  # two processes
        first, second = RedisEarlyChanges(redis_client), RedisEarlyChanges(redis_client)
    else:
        first = second = LocalEarlyChanges()
    team = new_team()
    edited, deleted, untouched = (
        (team, "C1", "1.000001"),
        (team, "C1", "1.000002"),
        (team, "C1", "1.000009"),
    )
    assert await first.keep(edited, "day 10", "1700000100.000002") == "day 10"
    assert await second.keep(edited, "day 9", "1700000100.000001") == "day 10"  # older: loses
    assert await second.keep(edited, "day 11", "1700000101.000000") == "day 11"
    assert await first.keep(deleted, None, "1700000100.000001") is None
    assert await second.keep(deleted, "edited before", "1700000100.000002") is None
    assert await first.newest([edited, deleted, untouched]) == {edited: "day 11", deleted: None}
    assert await second.newest([edited, deleted, untouched]) == {edited: "day 11", deleted: None}


async def test_an_edit_older_than_one_applied_leaves_the_newer_text(
    archive: Archive, redis_client: Redis
) -> None:
    team = new_team()
    posted = message(team, 1, "decision 0: ship the beta on day 0")
    first = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    second = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    await first.add(posted)
    await first.update_text(team, "C1", posted.ts, "ship the beta on day 10", "1700000200.000002")
    await second.update_text(team, "C1", posted.ts, "ship the beta on day 9", "1700000200.000001")
    stored = await archive.get(team, "C1", posted.ts)
    assert stored is not None and stored.text == "ship the beta on day 10"


async def test_changes_replayed_newest_first_before_their_message_leave_the_newest(
    archive: Archive, redis_client: Redis
) -> None:
    """A dead process's log replayed as it arrived: the message, its later edit, its earlier
    edit; and another message's deletion, then an edit older than it."""
    team = new_team()
    edited, deleted = message(team, 1, "ship on day 0"), message(team, 2, "ship on day 1")
    dead = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    # the dead process kept its changes before it died, with the messages not stored
    await dead.update_text(team, "C1", edited.ts, "ship on day 10", "1700000300.000002")
    await dead.delete(team, "C1", deleted.ts, "1700000300.000003")
    survivor = Ingest(archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    await asyncio.gather(survivor.add(edited), survivor.add(deleted))
    await survivor.update_text(team, "C1", edited.ts, "ship on day 10", "1700000300.000002")
    await survivor.update_text(team, "C1", edited.ts, "ship on day 9", "1700000300.000001")
    await survivor.delete(team, "C1", deleted.ts, "1700000300.000003")
    await survivor.update_text(team, "C1", deleted.ts, "ship on day 2", "1700000300.000002")
    stored = await archive.get(team, "C1", edited.ts)
    assert stored is not None and stored.text == "ship on day 10"
    assert await archive.get(team, "C1", deleted.ts) is None
    assert await archive.count(team) == 1


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
    finally:
        await ingest.close()
        await redis.aclose()


async def test_a_change_made_while_redis_is_away_waits_for_it_and_wins_over_the_early_one(
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
        with pytest.raises(RedisError):  # not applied out of order: its caller tries again
            await ingest.update_text(team, "C1", superseded.ts, "retro at 1pm")
        await asyncio.to_thread(own_redis.start)
        await ingest.update_text(team, "C1", superseded.ts, "retro at 1pm")  # the retry

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


@pytest.mark.parametrize("any_engine", ["sqlite", "postgresql"], indirect=True)
async def test_the_sql_store_keeps_the_newest_change_for_a_day_across_a_restart(
    any_engine: AsyncEngine,
) -> None:
    """Where there is no Redis the changes are kept in the SQL store: the newest by Slack's
    order, found by the next process (a new instance) too; an expired change counts as none;
    a forgotten workspace's changes go while another's stay."""
    first = SqlEarlyChanges(any_engine)
    team, other = new_team(), new_team()
    edited, deleted, untouched = (team, "C1", "1.1"), (team, "C1", "1.2"), (team, "C1", "1.9")
    assert await first.keep(edited, "day 10", "1700000100.000002") == "day 10"
    assert await first.keep(edited, "day 9", "1700000100.000001") == "day 10"  # older: loses
    assert await first.keep(edited, "day 11", "1700000101.000000") == "day 11"
    assert await first.keep(deleted, None, "1700000100.000001") is None
    assert await first.keep(deleted, "edited before", "1700000100.000002") is None
    many = [(team, "C2", f"2.{n:06d}") for n in range(250)]  # more than one statement's worth
    for key in many[::50]:
        await first.keep(key, f"text of {key[2]}", "1700000200.000000")
    wanted = [edited, deleted, untouched, *many]
    expected = {edited: "day 11", deleted: None, **{k: f"text of {k[2]}" for k in many[::50]}}
    assert await first.newest(wanted) == expected
    restarted = SqlEarlyChanges(any_engine)
    assert await restarted.newest(wanted) == expected
    assert await restarted.keep(edited, "day 8", "1700000099.000000") == "day 11"

    expired = SqlEarlyChanges(any_engine, ttl=-1)  # kept already past its day
    gone = (other, "C1", "3.000001")
    assert await expired.keep(gone, "day 30", "1700000300.000002") == "day 30"
    assert await SqlEarlyChanges(any_engine).newest([gone]) == {}
    assert await restarted.keep(gone, "day 20", "1700000300.000001") == "day 20"  # replaces it

    await restarted.delete_team(team)
    assert await restarted.newest(wanted) == {}
    assert await SqlEarlyChanges(any_engine).newest(wanted) == {}
    assert await restarted.newest([gone]) == {gone: "day 20"}
