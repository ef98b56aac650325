"""Turns of one conversation run one at a time across processes: two turn queues, each with its
own Redis client (as two Lore processes have), sharing one real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from app.turns import HandBack, Turn, TurnQueue
from memory.locks import RedisConversationLocks
from tests.conftest import REDIS_URL, new_team

EXPIRY = 0.3


@pytest.fixture
async def two_queues() -> AsyncIterator[tuple[TurnQueue, TurnQueue]]:
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(2)]
    queues = [
        TurnQueue(per_workspace=4, locks=RedisConversationLocks(client, expiry=EXPIRY))
        for client in clients
    ]
    yield queues[0], queues[1]
    for queue in queues:
        await queue.drain(grace=10)
    for client in clients:
        await client.aclose()


def turn(body: Callable[[], Awaitable[None]]) -> Turn:
    async def hand_back(reason: HandBack) -> None:
        raise AssertionError(f"handed back: {reason}")

    return Turn(run=body, hand_back=hand_back)


async def test_two_queues_never_run_one_conversation_at_once_even_past_the_expiry(
    two_queues: tuple[TurnQueue, TurnQueue],
) -> None:
    first, second = two_queues
    key = (new_team(), "C1", "1700000000.000100")
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    finished: list[str] = []

    def body(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if inside:
                overlaps.append((name, *inside))
            inside.append(name)
            for _ in range(10):  # 1 s in all: the lock must be renewed past its 0.3 s expiry
                await asyncio.sleep(0.1)
            inside.remove(name)
            finished.append(name)

        return run

    assert first.submit(key, turn(body("first")))
    assert second.submit(key, turn(body("second")))
    async with asyncio.timeout(30):
        await first.drain()
        await second.drain()
    assert sorted(finished) == ["first", "second"]
    assert overlaps == []


async def test_different_conversations_still_run_at_once_across_queues(
    two_queues: tuple[TurnQueue, TurnQueue],
) -> None:
    first, second = two_queues
    team = new_team()
    a_started = asyncio.Event()
    b_started = asyncio.Event()

    async def a() -> None:
        a_started.set()
        await b_started.wait()

    async def b() -> None:
        b_started.set()
        await a_started.wait()

    assert first.submit((team, "C1", "1.0"), turn(a))
    assert second.submit((team, "C1", "2.0"), turn(b))
    async with asyncio.timeout(10):  # they wait for each other: serialised, they would hang
        await first.drain()
        await second.drain()
    assert a_started.is_set() and b_started.is_set()


async def test_a_failed_turn_frees_its_conversation(
    two_queues: tuple[TurnQueue, TurnQueue], redis_client: aioredis.Redis
) -> None:
    first, second = two_queues
    team = new_team()
    key = (team, "C1", "1.0")
    held: list[int] = []
    ran: list[str] = []

    async def fails() -> None:
        held.append(await redis_client.exists(f"lore:lock:turn:{team}:C1:1.0"))
        raise RuntimeError("turn blew up")

    async def runs() -> None:
        ran.append("second")

    assert first.submit(key, turn(fails))
    await first.drain()
    assert held == [1]
    assert await redis_client.exists(f"lore:lock:turn:{team}:C1:1.0") == 0
    assert second.submit(key, turn(runs))
    await second.drain()
    assert ran == ["second"]
