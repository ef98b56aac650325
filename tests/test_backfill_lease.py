"""Backfill across processes: a workspace is read by one holder of its Redis lease at a time,
a lease is renewed while held and reported lost when taken over, and a workspace forgotten by
another process stops the backfill reading it."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.backfill import cli as backfill_cli
from app.backfill.reader import ChannelReader
from app.backfill.service import Backfill, BackfillBusy, BackfillLimits
from emulator import SlackEmulator
from handlers.slack_history import SlackHistory
from memory.archive import Archive
from memory.backfill_state import DONE, PENDING, BackfillState
from memory.embeddings import OnnxEmbedder
from memory.locks import Lease, Leases, LocalLeases, RedisLeases
from tests.conftest import REDIS_URL, new_team
from tests.harness import eventually

CHANNEL = "C0HISTORY"
OTHER = "C0OTHER"


async def seed(emulator: SlackEmulator, channel: str, count: int, threads: bool = True) -> set[str]:
    """`count` messages in a new channel the bot is in (with replies to every third one)."""
    emulator.add_channel(channel, channel.lower(), members=["U0ALICE", "U0BOB"])
    seeded: set[str] = set()
    for i in range(count):
        posted = await emulator.post_message(
            "U0ALICE", channel, f"{channel} note {i}", deliver=False
        )
        seeded.add(posted["ts"])
        if threads and i % 3 == 0:
            for j in range(2):
                reply = await emulator.post_message(
                    "U0BOB", channel, f"reply {j} to {i}", thread_ts=posted["ts"], deliver=False
                )
                seeded.add(reply["ts"])
    return seeded


def calls(emulator: SlackEmulator, method: str) -> int:
    return sum(1 for called, _ in emulator.calls if called == method)


@dataclass
class Process:
    """What one Lore process owns: its own clients, archive and backfill service."""

    redis: aioredis.Redis
    archive: Archive
    backfill: Backfill
    reader: SlackHistory

    async def close(self) -> None:
        await self.backfill.close()
        await self.archive.close()
        await self.redis.aclose()


async def process(
    emulator: SlackEmulator,
    chroma_url: str,
    embedder: OnnxEmbedder,
    engine: AsyncEngine,
    per_minute: float = 600.0,
    leases: Leases | None = None,
) -> Process:
    redis = aioredis.Redis.from_url(REDIS_URL)
    archive = await Archive.open_http(chroma_url, embedder, engine)
    limits = BackfillLimits(per_minute, per_minute, page_size=4)
    backfill = Backfill(
        archive,
        BackfillState(engine),
        limits,
        leases=leases if leases is not None else RedisLeases(redis),
        lease_poll=0.05,
    )
    client = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)
    return Process(redis, archive, backfill, SlackHistory(client, emulator.config.team_id))


async def test_a_redis_lease_is_exclusive_renewed_and_released(
    redis_client: aioredis.Redis,
) -> None:
    name = f"test:{new_team()}"
    first, second = RedisLeases(redis_client, ttl=1.5), RedisLeases(redis_client, ttl=1.5)
    held = await first.acquire(name)
    assert held is not None
    assert await second.acquire(name) is None
    await asyncio.sleep(4.0)  # well past its TTL: only renewal keeps it
    assert await second.acquire(name) is None and not held.lost.is_set()
    await held.release()
    again = await second.acquire(name)
    assert again is not None
    await again.release()
    await held.release()  # twice is harmless and frees nothing of the new holder's


async def test_a_lease_taken_over_is_reported_lost_and_not_released_over_the_new_holder(
    redis_client: aioredis.Redis,
) -> None:
    name = f"test:{new_team()}"
    leases = RedisLeases(redis_client, ttl=0.6)
    held = await leases.acquire(name)
    assert held is not None
    await redis_client.delete(f"lore:lease:{name}")  # as if it expired while its holder hung
    usurper = await leases.acquire(name)
    assert usurper is not None
    await asyncio.wait_for(held.lost.wait(), 10)
    await held.release()
    assert await leases.acquire(name) is None  # the new holder still has it
    await usurper.release()


async def test_local_leases_are_exclusive_within_the_process() -> None:
    leases = LocalLeases()
    held: Lease | None = await leases.acquire("backfill:T1")
    assert held is not None
    assert await leases.acquire("backfill:T1") is None
    other = await leases.acquire("backfill:T2")
    assert other is not None
    await held.release()
    again = await leases.acquire("backfill:T1")
    assert again is not None
    await held.release()  # twice is harmless and frees nothing of the new holder's
    assert await leases.acquire("backfill:T1") is None


async def test_two_processes_read_each_page_once(
    team_emulator: SlackEmulator,
    chroma_server: str,
    embedder: OnnxEmbedder,
    postgres_engine: AsyncEngine,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    seeded = {CHANNEL: await seed(emulator, CHANNEL, 14), OTHER: await seed(emulator, OTHER, 6)}
    one = await process(emulator, chroma_server, embedder, postgres_engine)
    two = await process(emulator, chroma_server, embedder, postgres_engine)
    try:
        # Both hear of both channels at once, as when two processes resume after a restart.
        await asyncio.gather(
            one.backfill.request(one.reader, CHANNEL),
            two.backfill.request(two.reader, CHANNEL),
            two.backfill.request(two.reader, OTHER),
            one.backfill.request(one.reader, OTHER),
        )

        async def finished() -> bool:
            found = await one.backfill.status(team)
            return len(found) == 2 and all(s.status == DONE for s in found)

        await eventually(finished, 60)
        for status in await two.backfill.status(team):
            assert (status.messages, status.last_error) == (len(seeded[status.channel_id]), None)
        # 14 and 6 top-level messages in pages of 4: 4 + 2 history pages; threads of 2 replies
        # under every third message: 5 + 2 threads of one replies page each. Nothing twice.
        assert calls(emulator, "conversations.history") == 4 + 2
        assert calls(emulator, "conversations.replies") == 5 + 2
        assert await one.archive.count(team) == sum(len(s) for s in seeded.values())
        for channel, stamps in seeded.items():
            for ts in stamps:
                assert await two.archive.get(team, channel, ts) is not None, (channel, ts)
    finally:
        await one.close()
        await two.close()


async def test_the_foreground_run_says_when_another_process_holds_the_workspace(
    team_emulator: SlackEmulator,
    chroma_server: str,
    embedder: OnnxEmbedder,
    postgres_engine: AsyncEngine,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    await seed(emulator, CHANNEL, 3)
    cli = await process(emulator, chroma_server, embedder, postgres_engine)
    held = await RedisLeases(cli.redis).acquire(f"backfill:{team}")  # the server's worker
    assert held is not None
    try:
        with pytest.raises(BackfillBusy):
            await cli.backfill.run(cli.reader, [CHANNEL])
        found = await cli.backfill.state.get(team, CHANNEL)
        assert found is not None and found.status == PENDING  # queued for the lease holder
        out = io.StringIO()
        assert await backfill_cli._run(cli.backfill, cli.reader, [CHANNEL], False, out) == 1
        assert out.getvalue() == f"{CHANNEL}: queued (another process is backfilling {team} now)\n"
        assert calls(emulator, "conversations.history") == 0
        await held.release()
        [status] = await cli.backfill.run(cli.reader, [CHANNEL])
        assert status.status == DONE and status.messages == 3 + 2
    finally:
        await held.release()
        await cli.close()


async def test_a_workspace_forgotten_elsewhere_stops_its_backfill(
    team_emulator: SlackEmulator,
    chroma_server: str,
    embedder: OnnxEmbedder,
    postgres_engine: AsyncEngine,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    await seed(emulator, CHANNEL, 12, threads=False)
    reading = await process(emulator, chroma_server, embedder, postgres_engine, per_minute=30)
    forgetting = await process(emulator, chroma_server, embedder, postgres_engine)
    try:
        await reading.backfill.request(reading.reader, CHANNEL)

        async def first_page() -> bool:
            found = await reading.backfill.state.get(team, CHANNEL)
            return found is not None and found.pages >= 1

        await eventually(first_page)  # the next page is two seconds away
        await forgetting.backfill.delete_team(team)  # an uninstall handled by the other process

        async def stopped() -> bool:
            return not reading.backfill.running(team)

        await eventually(stopped, 30)
        assert await reading.backfill.status(team) == []  # nothing written back
        assert await reading.archive.count(team) == 4  # the first page only
        assert calls(emulator, "conversations.history") == 2
    finally:
        await reading.close()
        await forgetting.close()


async def test_a_backfill_left_running_by_a_dead_process_is_taken_over(
    team_emulator: SlackEmulator,
    chroma_server: str,
    embedder: OnnxEmbedder,
    postgres_engine: AsyncEngine,
    redis_client: aioredis.Redis,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    seeded = await seed(emulator, CHANNEL, 6)
    state = BackfillState(postgres_engine)
    # A process began reading the channel and died: the row says running, its lease lingers.
    await state.request(team, CHANNEL)
    await state.start(team, CHANNEL, f"{time.time():.6f}")
    await redis_client.set(f"lore:lease:backfill:{team}", b"dead-process", px=1500)
    survivor = await process(emulator, chroma_server, embedder, postgres_engine)

    async def reader(team_id: str) -> ChannelReader | None:
        return survivor.reader if team_id == team else None

    survivor.backfill.keep_adopting(reader, every=0.1)
    try:

        async def finished() -> bool:
            found = await state.get(team, CHANNEL)
            return found is not None and found.status == DONE

        await eventually(finished, 30)
        found = await state.get(team, CHANNEL)
        assert found is not None and found.messages == len(seeded)
        assert await survivor.archive.count(team) == len(seeded)
    finally:
        await survivor.close()  # ends the adopting loop too
