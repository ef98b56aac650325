"""Lore's Redis client under a burst: commands past its pool wait for a connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import MaxConnectionsError

from app.main import REDIS_CONNECTIONS, open_redis
from tests.conftest import REDIS_URL

BURST = REDIS_CONNECTIONS + 50
HOLD_SECONDS = 0.2  # each command keeps its connection this long (BLPOP on an empty list)


async def test_a_burst_past_the_pool_waits_for_connections_and_every_command_succeeds() -> None:
    empty = f"lore-test:empty:{uuid.uuid4().hex}"
    lore = open_redis(REDIS_URL)
    plain = Redis.from_url(REDIS_URL)  # the control: redis-py's own pool
    try:
        answers = await asyncio.gather(
            *(lore.blpop([empty], timeout=HOLD_SECONDS) for _ in range(BURST))
        )
        assert answers == [None] * BURST
        assert lore.connection_pool.max_connections == REDIS_CONNECTIONS
        if plain.connection_pool.max_connections < BURST:  # redis-py 8: 100, and it raises
            with pytest.raises(MaxConnectionsError):
                await asyncio.gather(
                    *(plain.blpop([empty], timeout=HOLD_SECONDS) for _ in range(BURST))
                )
    finally:
        await lore.aclose()
        await plain.aclose()
