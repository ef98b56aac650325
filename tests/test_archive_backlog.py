"""The archive backlog is bounded per workspace: past it a message's channel is read again
from its history instead of waiting in memory, and every message still reaches the archive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.archive_queue import ArchiveQueue, Job
from app.backfill import ChannelReader, Page
from app.background import TaskPool
from app.intake import Intake
from app.main import Lore
from app.retry import Backoff
from emulator import SlackEmulator
from memory.intake import FileIntake
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

    def archive_retry_waiting(self, seconds: float, first: bool) -> None:
        raise AssertionError("no job fails in this test")

    def archive_retry_done(self) -> None:
        raise AssertionError("no job fails in this test")


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


class RetryCounts(Counts):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0
        self.retrying = 0

    def archive_retry_waiting(self, seconds: float, first: bool) -> None:
        self.waits += 1
        self.retrying += first

    def archive_retry_done(self) -> None:
        self.retrying -= 1


async def test_a_skipped_message_is_settled_once_the_reread_after_it_is_recorded() -> None:
    pool, rereads = TaskPool(limit=10), Rereads()
    queue = ArchiveQueue(pool, rereads, max_backlog=2, counts=Counts())
    gates = [asyncio.Event() for _ in range(2)]
    settled: list[str] = []

    def settle(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def done() -> None:
            settled.append(name)

        return done

    for n, gate in enumerate(gates):
        assert queue.submit("T1", "C1", waits_for(gate), lambda: Reader("T1"), settle(f"m{n}"))
    assert not queue.submit("T1", "C1", waits_for(gate), lambda: Reader("T1"), settle("skipped"))
    await eventually(lambda: _is(len(rereads.channels), 1))  # the first re-read, at once
    assert settled == []  # it may have started before the skipped message was posted
    gates[0].set()
    await eventually(lambda: _is(len(rereads.channels), 2))
    await eventually(lambda: _is(settled, ["m0", "skipped"]))
    gates[1].set()
    await pool.drain(grace=5)
    await queue.drain()
    assert settled == ["m0", "skipped", "m1"]


async def test_a_failing_job_is_retried_with_backoff_and_settled_once() -> None:
    pool, counts = TaskPool(limit=10), RetryCounts()
    queue = ArchiveQueue(pool, Rereads(), 10, counts, Backoff(first=0.01, cap=0.02))
    failures = [ConnectionError("store away")] * 2
    settled: list[str] = []

    async def job() -> None:
        if failures:
            raise failures.pop()

    async def done() -> None:
        settled.append("done")

    assert queue.submit("T1", "C1", job, lambda: Reader("T1"), done)
    queue.submit_change("T1", job, done)
    await pool.drain(grace=5)
    assert settled == ["done", "done"]
    assert counts.waits == 2 and counts.retrying == 0
    assert queue.backlog("T1") == 0


async def _is(value: object, expected: object) -> bool:
    return value == expected


async def test_a_forgotten_workspace_has_no_job_run_after_the_forgetting() -> None:
    """Halting a workspace waits for its running job; its jobs submitted before (still waiting
    for the pool) or during the halt never run, their entries are let go; another workspace's
    job waiting beside them runs (the control)."""
    pool = TaskPool(limit=1)
    queue = ArchiveQueue(pool, Rereads(), 10, Counts())
    ran: list[str] = []
    settled: list[str] = []
    gate = asyncio.Event()

    def job(name: str, wait: asyncio.Event | None = None) -> Job:
        async def run() -> None:
            if wait is not None:
                await wait.wait()
            ran.append(name)

        return run

    def done(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def settle() -> None:
            settled.append(name)

        return settle

    queue.submit("T1", "C1", job("running", gate), lambda: Reader("T1"), done("running"))
    await eventually(lambda: _is(queue.backlog("T1"), 1))
    queue.submit("T1", "C1", job("waiting"), lambda: Reader("T1"), done("waiting"))
    queue.submit_change("T1", job("change"), done("change"))
    queue.submit("T2", "C1", job("other"), lambda: Reader("T2"), done("other"))
    halting = asyncio.create_task(queue.halt_team("T1"))
    await asyncio.sleep(0)
    assert not halting.done()  # the running job has not ended
    gate.set()
    await halting
    assert ran == ["running"]
    queue.submit("T1", "C1", job("during"), lambda: Reader("T1"), done("during"))
    queue.resume_team("T1")
    await pool.drain(grace=5)
    assert ran == ["running", "other"]
    assert sorted(settled) == ["change", "during", "other", "running", "waiting"]
    assert queue.backlog("T1") == 0


async def test_a_job_whose_store_stays_away_through_its_retries_runs_again_from_the_intake(
    tmp_path: Path,
) -> None:
    """Its message stays kept, and the intake runs the same job again once the store is back,
    without a restart; it does not replay the message (its turn was answered live, so it is
    not answered twice). A job that succeeds is settled at once (the control)."""
    pool, counts = TaskPool(limit=10), RetryCounts()
    quick = Backoff(first=0.01, cap=0.02, attempts=2)
    queue = ArchiveQueue(pool, Rereads(), 10, counts, quick)
    received = Intake(FileIntake.open(tmp_path / "intake"), counts, quick, adopt_every=0.05)
    replayed: list[dict[str, Any]] = []
    stored: list[str] = []
    away = [True]

    async def replay(team_id: str, payload: dict[str, Any]) -> None:
        replayed.append(payload)

    async def serves(team_id: str) -> bool:
        return True

    def archiving(ts: str) -> Job:
        async def job() -> None:
            if away[0] and ts == "1.000001":
                raise ConnectionError("store away")
            stored.append(ts)

        return job

    received.keep_adopting(replay, serves)
    for ts in ("1.000001", "1.000002"):
        kept = await received.keep("T1", f"C1:{ts}", {"event": {"ts": ts}})
        queue.submit(
            "T1",
            "C1",
            archiving(ts),
            lambda: Reader("T1"),
            partial(received.done, kept),
            stranded=partial(received.strand, kept),
        )
    try:
        await eventually(lambda: _is(received.stranded, 1))
        assert stored == ["1.000002"] and received.pending == 1
        assert queue.unsettled("T1", "C1", "1.000003", "1.000003")  # the archive lacks one
        away[0] = False
        await eventually(lambda: _is(received.pending, 0))
        assert stored == ["1.000002", "1.000001"]
        assert replayed == []
        assert not queue.unsettled("T1", "C1", "1.000003", "1.000003")  # whole again
    finally:
        await received.close()
        await pool.drain(grace=5)
