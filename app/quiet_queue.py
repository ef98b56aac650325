"""Work that waits while the Slack edge is busy acknowledging: it runs once no delivery has
arrived for a moment, or once the oldest job has waited `max_wait` seconds, in arrival order.

A burst of deliveries is answered first and the work they ask for follows right after (see
`handlers.early_ack`, which writes each delivery down before its ack). One job runs at a time,
one per pass of the event loop, so a delivery arriving meanwhile is answered between two jobs.
Bounded: with `limit` jobs waiting, `put` refuses and the caller does the work itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("lore.edge")

Job = Callable[[], Awaitable[None]]

LIMIT = 1000
QUIET = 0.002
MAX_WAIT = 0.25


class QuietQueue:
    """Jobs run in order when the edge is quiet (or they are overdue); `close` runs the rest."""

    def __init__(
        self, limit: int = LIMIT, quiet: float = QUIET, max_wait: float = MAX_WAIT
    ) -> None:
        self._limit = limit
        self._quiet = quiet
        self._max_wait = max_wait
        self._jobs: deque[tuple[float, Job]] = deque()
        self._running = 0
        self._last_arrival = 0.0
        self._hurry = False
        self._closed = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return len(self._jobs) + self._running

    def arrived(self) -> None:
        """A delivery arrived: waiting jobs hold back for `quiet` seconds more."""
        self._last_arrival = time.monotonic()

    def put(self, job: Job) -> bool:
        """Queue `job`; False (and nothing queued) when the queue is full or closed."""
        if self._closed or len(self._jobs) >= self._limit:
            return False
        if not self._jobs:
            self._wake.set()  # a queue with jobs already has its runner waiting on the first
        self._jobs.append((time.monotonic(), job))
        self._idle.clear()
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="quiet-queue")
        return True

    async def _run(self) -> None:
        while True:
            if not self._jobs:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            queued_at, job = self._jobs[0]
            now = time.monotonic()
            wait = min(self._last_arrival + self._quiet, queued_at + self._max_wait) - now
            if wait > 0 and not self._hurry:
                await asyncio.sleep(wait)
                continue
            self._jobs.popleft()
            self._running += 1
            try:
                await job()
            except Exception:
                log.exception("deferred work failed")
            await asyncio.sleep(0)  # what the job started (a listener) begins, and counts, first
            self._running -= 1

    async def close(self) -> None:
        """Refuse new jobs, run the waiting ones now, then stop."""
        self._closed = True
        self._hurry = True
        self._wake.set()
        if self._runner is not None:
            await self._idle.wait()
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
