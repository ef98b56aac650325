"""Per-workspace locks and leases: asyncio in one process, Redis across processes.

A lock serialises a short critical section and waits for its turn; a lease marks who does a
long job (e.g. a backfill): taking one never waits, and a held one is renewed until released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("lore.locks")


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


OUTAGE_WAIT = 60.0  # seconds a lock waits for Redis to come back before giving up


async def acquire_through_outage(lock: Lock, within: float = OUTAGE_WAIT) -> None:
    """Acquire `lock`; while Redis cannot be reached, try again with backoff for up to
    `within` seconds (a Redis restart), then raise its error. LockError if the lock stays
    taken past its own `blocking_timeout`."""
    deadline = time.monotonic() + within
    delay = 0.1
    while True:
        try:
            if await lock.acquire():
                return
            raise LockError(f"lock {lock.name!r} is still held by someone else")
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis is away (%s); waiting to take %r", error, lock.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def release_or_let_expire(lock: Lock) -> None:
    """Release `lock`; if Redis is away it expires by itself (the work it guarded is done, so
    an error here must not report that work as failed)."""
    try:
        await lock.release()
    except LockNotOwnedError:
        log.warning("lock %r expired before it was released", lock.name)
    except (RedisError, OSError) as error:
        log.warning("could not release %r (it expires by itself): %s", lock.name, error)


class RedisLocks:
    """A Redis lock per workspace, with an expiry so a dead process cannot hold it forever.

    An expired lock is still safe: the version check in `blocks.py` refuses a stale write.
    While Redis restarts, taking the lock waits for it (`acquire_through_outage`).
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
        await acquire_through_outage(lock)
        try:
            yield
        finally:
            await release_or_let_expire(lock)


class Lease(Protocol):
    """A held lease; `lost` is set if it lapsed (another holder may have it now)."""

    @property
    def lost(self) -> asyncio.Event: ...

    async def release(self) -> None:
        """Give the lease up (idempotent)."""
        ...


class Leases(Protocol):
    """Exclusive, expiring claims on named jobs, shared by every process that can see them."""

    async def acquire(self, name: str) -> Lease | None:
        """The lease on `name`, or None at once while someone else holds it."""
        ...


class LocalLease:
    """A lease of one process; it never lapses."""

    def __init__(self, held: set[str], name: str) -> None:
        self._held = held
        self._name = name
        self._lost = asyncio.Event()
        self._released = False

    @property
    def lost(self) -> asyncio.Event:
        return self._lost

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._held.discard(self._name)


class LocalLeases:
    """Leases within one process (no Redis): enough while a single process runs."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def acquire(self, name: str) -> Lease | None:
        if name in self._held:
            return None
        self._held.add(name)
        return LocalLease(self._held, name)


class RedisLease:
    """A Redis lock with a TTL, renewed every ttl / 3 seconds while held.

    The lease is lost when Redis says another token holds the key, or when no renewal has
    succeeded for a whole TTL (Redis unreachable: the key may have expired meanwhile).
    """

    def __init__(self, lock: Lock, ttl: float) -> None:
        self._lock = lock
        self._ttl = ttl
        self._lost = asyncio.Event()
        self._releasing = asyncio.Event()
        self._renewing = asyncio.create_task(self._renew(), name=f"lease-{lock.name!r}")

    @property
    def lost(self) -> asyncio.Event:
        return self._lost

    async def release(self) -> None:
        if self._releasing.is_set():
            return
        self._releasing.set()  # the renewal ends after its current call (no cancel to lose)
        await self._renewing
        if not self._lost.is_set():
            with contextlib.suppress(RedisError):  # lapsed meanwhile, or Redis is away: it expires
                await self._lock.release()

    async def _renew(self) -> None:
        renewed = time.monotonic()
        while not await _wait(self._releasing, self._ttl / 3):
            try:
                await self._lock.reacquire()
                renewed = time.monotonic()
            except LockNotOwnedError:
                log.warning("lease %r lapsed and was taken over", self._lock.name)
                self._lost.set()
                return
            except (RedisError, OSError) as error:
                if time.monotonic() - renewed >= self._ttl:
                    log.warning("lease %r lost: Redis unreachable (%s)", self._lock.name, error)
                    self._lost.set()
                    return


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


class RedisLeases:
    """Leases shared by every process on one Redis: `SET NX PX ttl` with a random token."""

    def __init__(self, redis: Redis, ttl: float = 30.0, prefix: str = "lore:lease:") -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix

    async def acquire(self, name: str) -> Lease | None:
        lock = self._redis.lock(self._prefix + name, timeout=self._ttl, thread_local=False)
        if not await lock.acquire(blocking=False):
            return None
        return RedisLease(lock, self._ttl)


class ConversationLocks(Protocol):
    """Runs the turns of one conversation one at a time, across processes."""

    def hold(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> AbstractAsyncContextManager[None]:
        """Hold the conversation's lock for the body of an `async with`, waiting for it."""
        ...


class RedisConversationLocks:
    """A short-expiry Redis lock per conversation, renewed while its turn runs.

    A process that dies mid-turn frees the conversation within `expiry` seconds. In one
    process no such lock is needed: the turn queue already runs a conversation's turns in order.
    """

    def __init__(self, redis: Redis, expiry: float = 10.0, poll: float = 0.05) -> None:
        self._redis = redis
        self._expiry = expiry
        self._poll = poll

    @asynccontextmanager
    async def hold(self, team_id: str, channel_id: str, thread_ts: str) -> AsyncIterator[None]:
        lock = self._redis.lock(
            f"lore:lock:turn:{team_id}:{channel_id}:{thread_ts}",
            timeout=self._expiry,
            sleep=self._poll,
            thread_local=False,
        )
        await acquire_through_outage(lock)
        lease = RedisLease(lock, self._expiry)
        try:
            yield
        finally:
            await lease.release()
