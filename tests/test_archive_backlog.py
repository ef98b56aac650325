"""The archive backlog is bounded per workspace: past it a message's channel is read again
from its history instead of waiting in memory, and every message still reaches the archive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.archive_queue import ArchiveQueue, Job
from app.backfill import ChannelReader, Page
from app.background import TaskPool
from app.main import Lore
from emulator import SlackEmulator
from tests.harness import eventually, lore_settings, start_lore_on


class Reader:
    """A channel reader that is never read from: the queue only hands it to `Rereads`."""

    def __init__(self, team_id: str) -> None:
        self.team_id = team_id

    async def history(
        self, channel_id: str, *, latest: str, cursor: str | None, limit: int
    ) -> Page:
        raise AssertionError("not read in this test")

    async def replies(
        self, channel_id: str, thread_ts: str, *, latest: str, cursor: str | None, limit: int
    ) -> Page:
        raise AssertionError("not read in this test")

    async def channel_type(self, channel_id: str) -> str:
        return "channel"

    async def member_channels(self) -> list[str]:
        return []


class Rereads:
    def __init__(self) -> None:
        self.channels: list[tuple[str, str]] = []

    async def reread(self, reader: ChannelReader, channel_id: str) -> None:
        self.channels.append((reader.team_id, channel_id))


class Counts:
    def __init__(self) -> None:
        self.deferred = 0

    def archive_deferred(self) -> None:
        self.deferred += 1


def waits_for(gate: asyncio.Event) -> Job:
    async def job() -> None:
        await gate.wait()

    return job


async def test_past_the_bound_a_channel_is_reread_at_once_and_again_when_half_drained() -> None:
    pool, rereads, counts = TaskPool(limit=10), Rereads(), Counts()
    queue = ArchiveQueue(pool, rereads, max_backlog=4, counts=counts)
    gates = [asyncio.Event() for _ in range(4)]
    readers_made: list[str] = []

    def reader_of(channel: str) -> Callable[[], Reader]:
        def make() -> Reader:
            readers_made.append(channel)
            return Reader("T1")

        return make

    accepted = [queue.submit("T1", "C1", waits_for(gate), reader_of("C1")) for gate in gates]
    assert accepted == [True] * 4
    refused = [
        queue.submit("T1", channel, waits_for(asyncio.Event()), reader_of(channel))
        for channel in ("C1", "C2", "C1")
    ]
    assert refused == [False] * 3
    assert queue.backlog("T1") == 4
    assert readers_made == ["C1", "C2"]  # one reader per channel skipped
    assert counts.deferred == 3
    skipped = [("T1", "C1"), ("T1", "C2")]

    async def reread(times: int) -> bool:
        return rereads.channels == skipped * times

    await eventually(lambda: reread(1))  # queued in the database at once
    assert queue.submit("T2", "C9", waits_for(gates[0]), reader_of("C9"))  # a bound of its own

    async def backlog_is(count: int) -> bool:
        return queue.backlog("T1") == count

    gates[0].set()
    await eventually(lambda: backlog_is(3))
    await queue.rereads_queued()  # whatever this job's end decided has been queued
    assert rereads.channels == skipped  # 3 of 4: not down to half yet
    gates[1].set()
    await eventually(lambda: backlog_is(2))
    await eventually(lambda: reread(2))  # again, now that the skipped messages are all in Slack
    for gate in gates[2:]:
        gate.set()
    await pool.drain(grace=5)
    await queue.drain()
    assert queue.backlog("T1") == 0 and queue.backlog("T2") == 0
    assert rereads.channels == skipped * 2  # the bound was left once


@pytest.fixture
async def lore(team_emulator: SlackEmulator, tmp_path: Path) -> AsyncIterator[Lore]:
    running = await start_lore_on(
        team_emulator, lore_settings(tmp_path, None, lore_max_archive_backlog=2)
    )
    yield running
    await running.stop()


async def test_a_flood_past_the_backlog_still_archives_every_message(
    lore: Lore, team_emulator: SlackEmulator
) -> None:
    team = team_emulator.config.team_id
    texts = [f"flood message {n} about the billing migration" for n in range(40)]
    posted = [await team_emulator.post_message("U0ALICE", "C0GENERAL", text) for text in texts]

    async def all_archived() -> bool:
        return await lore.stores.archive.count(team) == len(posted)

    await eventually(all_archived, within=60)
    for message, text in zip(posted, texts, strict=True):
        stored = await lore.stores.archive.get(team, "C0GENERAL", message["ts"])
        assert stored is not None and stored.text == text
    exposition, _ = await lore.services.metrics.exposition("text/plain")
    deferred = re.search(rb"^lore_archive_deferred_total (\S+)$", exposition, re.M)
    assert deferred is not None and float(deferred.group(1)) > 0
