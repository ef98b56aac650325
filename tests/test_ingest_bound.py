"""The ingest batcher is bounded: past `max_pending` messages, `add` waits for room, and every
message still reaches the archive (real embedded Chroma and the real embedding model)."""

from __future__ import annotations

import asyncio

import pytest

from app.ingest import Ingest
from memory.archive import Archive, ArchivedMessage
from memory.audience import Audience
from tests.conftest import new_team

BOUND = 8
MESSAGES = 100


@pytest.fixture
def archive(sqlite_archive: Archive) -> Archive:
    return sqlite_archive


def message(team: str, n: int) -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team,
        channel_id="C1",
        channel_type="channel",
        ts=f"1700000000.{n:06d}",
        text=f"status update number {n} about the deploy pipeline",
        user_id="U1",
        thread_ts=None,
        permalink=None,
    )


async def test_a_flood_waits_for_room_and_every_message_is_archived(archive: Archive) -> None:
    ingest = Ingest(archive, linger=0.0, max_pending=BOUND)
    team = new_team()
    adds = {asyncio.create_task(ingest.add(message(team, n))) for n in range(MESSAGES)}
    await asyncio.sleep(0)  # every add has taken its first step
    assert ingest.pending == BOUND
    assert ingest.held_back == MESSAGES - BOUND
    peak = 0
    left = adds
    while left:
        _done, left = await asyncio.wait(left, return_when=asyncio.FIRST_COMPLETED)
        peak = max(peak, ingest.pending)
    await asyncio.gather(*adds)
    assert peak <= BOUND
    assert ingest.pending == 0 and ingest.held_back == 0
    assert await archive.count(team) == MESSAGES
    for n in (0, MESSAGES // 2, MESSAGES - 1):
        stored = await archive.get(team, "C1", f"1700000000.{n:06d}")
        assert stored is not None and stored.text == message(team, n).text


async def test_an_edit_or_deletion_that_overtakes_its_message_still_applies(
    archive: Archive,
) -> None:
    ingest = Ingest(archive, linger=0.2)
    team = new_team()
    first, second, third, fourth = (message(team, n) for n in range(4))
    # waiting in its batch when the change arrives
    storing = asyncio.create_task(ingest.add(first))
    await asyncio.sleep(0)
    await ingest.update_text(team, "C1", first.ts, "edited while waiting")
    storing = asyncio.create_task(ingest.add(second))
    await asyncio.sleep(0)
    await ingest.delete(team, "C1", second.ts)
    await storing
    # not seen at all when the change arrives
    await ingest.update_text(team, "C1", third.ts, "edited before it arrived")
    await ingest.delete(team, "C1", fourth.ts)
    await asyncio.gather(ingest.add(third), ingest.add(fourth))
    stored = await archive.get(team, "C1", first.ts)
    assert stored is not None and stored.text == "edited while waiting"
    assert await archive.get(team, "C1", second.ts) is None
    stored = await archive.get(team, "C1", third.ts)
    assert stored is not None and stored.text == "edited before it arrived"
    assert await archive.get(team, "C1", fourth.ts) is None
    assert await archive.count(team) == 2
    hits = await archive.search(team, "edited before it arrived", audience=Audience.everyone())
    assert hits and hits[0].message.ts == third.ts
