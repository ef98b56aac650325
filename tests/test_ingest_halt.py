"""A workspace being forgotten has nothing archived by the ingest after its halt returns: a batch
of its messages being stored when the halt comes is waited for, so the forgetting's deletion
that follows the halt removes it, and what arrives while halted is not stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.ingest import Ingest
from memory.archive import Archive
from memory.early_changes import Change, LocalEarlyChanges, MessageId
from tests.harness import eventually
from tests.test_ingest_bound import message


class HeldFirstLook(LocalEarlyChanges):
    """Early changes whose first look-up (a batch's, before it is written) waits for `go`."""

    def __init__(self) -> None:
        super().__init__()
        self.looking = asyncio.Event()
        self.go = asyncio.Event()
        self._looked = False

    async def newest(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        if not self._looked:
            self._looked = True
            self.looking.set()
            await self.go.wait()
        return await super().newest(messages)


async def test_a_batch_storing_when_its_workspace_halts_is_waited_for_then_nothing_more(
    sqlite_archive: Archive,
) -> None:
    early = HeldFirstLook()
    ingest = Ingest(sqlite_archive, linger=0.0, early=early)
    storing = [
        asyncio.create_task(ingest.add(message("TGONE", 1))),
        asyncio.create_task(ingest.add(message("TKEPT", 2))),
    ]
    await early.looking.wait()  # the batch of both is being stored
    halting = asyncio.create_task(ingest.halt_team("TGONE"))
    early.go.set()
    await halting
    assert await sqlite_archive.count("TGONE") == 1  # the halt returned once it was stored
    await sqlite_archive.delete_team("TGONE")  # the forgetting's deletion
    await asyncio.gather(*storing)

    await ingest.add(message("TGONE", 3))  # arrives while halted: dropped
    await ingest.add(message("TKEPT", 4))  # another workspace's: stored (the control)
    assert ingest.pending == 0
    assert await sqlite_archive.count("TGONE") == 0
    assert await sqlite_archive.count("TKEPT") == 2

    ingest.resume_team("TGONE")
    await ingest.add(message("TGONE", 5))  # taken again once the forgetting has ended
    assert await sqlite_archive.count("TGONE") == 1
    await ingest.close()


async def test_a_message_waiting_for_its_batch_through_a_forgetting_is_not_stored(
    sqlite_archive: Archive,
) -> None:
    ingest = Ingest(sqlite_archive, linger=0.5)
    waiting = [
        asyncio.create_task(ingest.add(message("TGONE", 1))),
        asyncio.create_task(ingest.add(message("TKEPT", 2))),
    ]

    async def both_waiting() -> bool:
        return ingest.pending == 2

    await eventually(both_waiting)  # for their batch
    await ingest.halt_team("TGONE")
    await sqlite_archive.delete_team("TGONE")  # the forgetting's deletion
    ingest.resume_team("TGONE")  # over before the batch is stored
    await asyncio.gather(*waiting)
    assert await sqlite_archive.count("TGONE") == 0  # taken before the forgetting: let go
    assert await sqlite_archive.count("TKEPT") == 1  # the control
    await ingest.close()
