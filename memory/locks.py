"""Per-workspace locks: asyncio in one process, Redis across processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis


class WorkspaceLocks(Protocol):
    """Serialises memory edits of one workspace."""

    def hold(self, team_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the workspace's lock for the body of an `async with`."""
        ...


class LocalLocks:
    """One asyncio.Lock per workspace; enough while a single process runs."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, team_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(team_id, asyncio.Lock())
        async with lock:
            yield


class RedisLocks:
    """A Redis lock per workspace, with an expiry so a dead process cannot hold it forever.

    An expired lock is still safe: the version check in `blocks.py` refuses a stale write.
    """

    def __init__(self, redis: Redis, timeout: float = 10.0, wait: float = 30.0) -> None:
        self._redis = redis
        self._timeout = timeout
        self._wait = wait

    @asynccontextmanager
    async def hold(self, team_id: str) -> AsyncIterator[None]:
        lock = self._redis.lock(
            f"lore:lock:memory:{team_id}",
            timeout=self._timeout,
            blocking_timeout=self._wait,
            sleep=0.01,
        )
        async with lock:
            yield
