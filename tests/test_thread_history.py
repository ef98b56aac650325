"""When the archive vouches for a thread's history, and when the turn must ask Slack instead."""

from __future__ import annotations

import asyncio

from app.archive_queue import ArchiveQueue
from app.background import TaskPool
from app.thread_history import ArchivedHistory
from memory.archive import Archive, ArchivedMessage
from tests.conftest import new_team
from tests.test_archive_backlog import Counts, Reader, Rereads, waits_for

PARENT = "1700000000.000100"


def message(
    team: str, ts: str, text: str, *, thread: bool = True, bot: bool = False
) -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team,
        channel_id="C1",
        channel_type="channel",
        ts=ts,
        text=text,
        user_id=None if bot else "U1",
        thread_ts=PARENT if thread else None,
        is_bot=bot,
    )


class Settling:
    def __init__(self) -> None:
        self.waiting = False

    def unsettled(self, team_id: str, channel_id: str, thread_ts: str, before_ts: str) -> bool:
        return self.waiting


class Flags:
    def __init__(self) -> None:
        self.excluded = False
        self.backfilling = False

    async def is_excluded(self, team_id: str, channel_id: str) -> bool:
        return self.excluded

    async def is_backfilling(self, team_id: str, channel_id: str) -> bool:
        return self.backfilling


def histories(archive: Archive, settling: Settling, flags: Flags) -> ArchivedHistory:
    return ArchivedHistory(
        archive,
        is_excluded=flags.is_excluded,
        settling=settling,
        backfilling=flags.is_backfilling,
    )


async def test_the_archive_serves_a_whole_thread_and_nothing_after_the_asked_message(
    sqlite_archive: Archive,
) -> None:
    team = new_team()
    await sqlite_archive.add(
        [
            message(team, PARENT, "the parent", thread=True),
            message(team, "1700000001.000100", "an answer", bot=True),
            message(team, "1700000002.000100", "the question"),
            message(team, "1700000003.000100", "said later"),
        ]
    )
    settling, flags = Settling(), Flags()
    served = histories(sqlite_archive, settling, flags)
    found = await served.history(team, "C1", PARENT, "1700000002.000100")
    assert found is not None
    assert [(m.text, m.from_bot) for m in found] == [
        ("the parent", False),
        ("an answer", True),
        ("the question", False),
    ]
    assert await served.history(team, "C2", PARENT, "1700000002.000100") is None  # no thread
    settling.waiting = True
    assert await served.history(team, "C1", PARENT, "1700000002.000100") is None
    settling.waiting, flags.excluded = False, True
    assert await served.history(team, "C1", PARENT, "1700000002.000100") is None
    flags.excluded, flags.backfilling = False, True
    assert await served.history(team, "C1", PARENT, "1700000002.000100") is None
    flags.backfilling = False
    assert await served.history(team, "C1", PARENT, "1700000002.000100") is not None
    served.gap(team, "C1", PARENT)  # e.g. Lore's reply could not be archived
    assert await served.history(team, "C1", PARENT, "1700000002.000100") is None


async def test_a_thread_whose_parent_is_not_archived_is_not_served(
    sqlite_archive: Archive,
) -> None:
    team = new_team()
    await sqlite_archive.add([message(team, "1700000001.000100", "a reply")])
    served = histories(sqlite_archive, Settling(), Flags())
    assert await served.history(team, "C1", PARENT, "1700000002.000100") is None


async def test_a_message_on_its_way_unsettles_only_later_messages_of_its_thread() -> None:
    pool = TaskPool(limit=10)
    queue = ArchiveQueue(pool, Rereads(), max_backlog=10, counts=Counts())
    gate = asyncio.Event()
    queue.submit(
        "T1", "C1", waits_for(gate), lambda: Reader("T1"), ts="1700000005.000100", thread_ts=PARENT
    )
    assert queue.unsettled("T1", "C1", PARENT, "1700000006.000100")
    assert not queue.unsettled("T1", "C1", PARENT, "1700000005.000100")  # the message itself
    assert not queue.unsettled("T1", "C1", "1700000001.000100", "1700000006.000100")
    assert not queue.unsettled("T1", "C2", PARENT, "1700000006.000100")
    assert not queue.unsettled("T2", "C1", PARENT, "1700000006.000100")
    gate.set()
    await pool.drain(grace=5)
    assert not queue.unsettled("T1", "C1", PARENT, "1700000006.000100")


async def test_a_failed_archive_job_leaves_its_channel_unsettled() -> None:
    pool = TaskPool(limit=10)
    queue = ArchiveQueue(pool, Rereads(), max_backlog=10, counts=Counts())

    async def fails() -> None:
        raise RuntimeError("the store is down")

    queue.submit("T1", "C1", fails, lambda: Reader("T1"), ts="1700000005.000100", thread_ts=PARENT)
    await pool.drain(grace=5)
    assert queue.unsettled("T1", "C1", "1700000001.000100", "1700000009.000100")  # any thread
    assert not queue.unsettled("T1", "C2", PARENT, "1700000009.000100")
