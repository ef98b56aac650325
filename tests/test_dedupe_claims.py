"""A delivery's claim stays pending until it is handed on: Slack's retry of an attempt that
failed after its claim was stored takes the claim over; duplicates and twins still lose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from memory.dedupe import LocalOnceKeys, OnceKeys, RedisOnceKeys
from tests.conftest import new_team
from tests.processes import RedisServer


@pytest.fixture(params=["redis", "local"])
async def once(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OnceKeys]:
    if request.param == "local":
        yield LocalOnceKeys()
        return
    server = RedisServer(tmp_path / "redis")
    server.start()
    redis = Redis.from_url(server.url)
    try:
        yield RedisOnceKeys(redis)
    finally:
        await redis.aclose()
        server.stop()


async def test_a_retry_takes_over_a_claim_its_failed_attempt_left_pending(once: OnceKeys) -> None:
    key = f"event:{new_team()}:Ev1"
    assert await once.claim(key)  # stored, but the attempt failed before it was handed on
    assert not await once.claim(key)  # a twin delivery arriving meanwhile loses
    assert await once.claim(key, retry=True)
    await once.settle(key)
    assert not await once.claim(key, retry=True)  # a second retry, once handed on, loses
    assert not await once.claim(key)


async def test_a_retry_of_a_delivery_handed_on_is_a_duplicate(once: OnceKeys) -> None:
    key = f"message:{new_team()}:C1:1700000000.000001"
    assert await once.claim(key)
    await once.settle(key)
    assert not await once.claim(key, retry=True)
    other = f"message:{new_team()}:C1:1700000000.000002"
    assert await once.claim(other, retry=True)  # a retry of a delivery never claimed wins
