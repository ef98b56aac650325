"""A deletion that overtakes the storing of a reply that quoted the deleted message still takes
the reply along: waiting in its batch, or not yet handed to it (the early changes)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.ingest import Ingest, still_quoted
from memory.archive import Archive, ArchivedMessage
from memory.early_changes import RedisEarlyChanges
from memory.reply_sources import Quote, ReplySources
from tests.conftest import new_team


def message(team: str, channel: str, n: int, text: str, *, bot: bool = False) -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team, channel_id=channel, channel_type="channel", ts=f"1700000000.{n:06d}",
        text=text, user_id=None if bot else "U1", is_bot=bot,
    )  # fmt: skip


async def test_a_reply_waiting_in_its_batch_goes_with_the_message_it_quoted(
    sqlite_archive: Archive, sqlite_engine: AsyncEngine
) -> None:
    team = new_team()
    ingest = Ingest(sqlite_archive, linger=0.3, replies=ReplySources(sqlite_engine))
    quoted = message(team, "C1", 1, "the offsite is in Lisbon")
    other = message(team, "C1", 2, "the offsite budget is 10k")
    await ingest.add(quoted)
    await ingest.add(other)
    reply = message(team, "C2", 3, "It is in Lisbon.", bot=True)
    control = message(team, "C2", 4, "It is 10k.", bot=True)
    storing = asyncio.create_task(ingest.add_reply(reply, [Quote("C1", quoted.ts, quoted.text)]))
    kept = asyncio.create_task(ingest.add_reply(control, [Quote("C1", other.ts, other.text)]))
    await asyncio.sleep(0.05)  # both replies accepted, waiting for their batch

    await ingest.delete(team, "C1", quoted.ts)
    await asyncio.gather(storing, kept)

    assert await sqlite_archive.get(team, "C1", quoted.ts) is None
    assert await sqlite_archive.get(team, "C2", reply.ts) is None
    assert await sqlite_archive.get(team, "C2", control.ts) is not None


async def test_a_reply_recorded_but_not_yet_handed_over_is_dropped_when_stored(
    sqlite_archive: Archive, sqlite_engine: AsyncEngine, redis_client: Redis
) -> None:
    team = new_team()
    replies = ReplySources(sqlite_engine)
    # two processes: one is about to store the reply, the other receives the deletion
    storing = Ingest(sqlite_archive, linger=0.0, early=RedisEarlyChanges(redis_client))
    changing = Ingest(
        sqlite_archive, linger=0.0, early=RedisEarlyChanges(redis_client), replies=replies
    )
    quoted = message(team, "C1", 1, "the acquisition closes in March")
    await storing.add(quoted)
    reply = message(team, "C2", 2, "It closes in March.", bot=True)
    await replies.record(team, "C2", reply.ts, [Quote("C1", quoted.ts, quoted.text)])

    await changing.delete(team, "C1", quoted.ts)
    await storing.add(reply)

    assert await sqlite_archive.get(team, "C1", quoted.ts) is None
    assert await sqlite_archive.get(team, "C2", reply.ts) is None
    assert await replies.quoting(team, "C1", quoted.ts) == []


def test_an_edit_keeps_a_quote_only_while_the_quoted_text_is_there() -> None:
    assert still_quoted("Standup moves to 9:30.", "Standup  moves to\n9:30. Room 4.")
    assert still_quoted("a long message cut here…", "a long message cut here and more")
    assert not still_quoted("The launch is on the 14th.", "The launch moved to the 21st.")
    assert not still_quoted("", "anything")  # unknown quote: any edit may have changed it
