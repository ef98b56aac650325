"""Bounded background work: at most `limit` jobs run at once; all are drained on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("lore.background")


class TaskPool:
    """Runs coroutines in the background with bounded concurrency and tracks them."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, job: Coroutine[Any, Any, None], name: str = "job") -> None:
        task = asyncio.create_task(self._run(job, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Return once no job is running or waiting (jobs spawned meanwhile included)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, grace: float = 30.0) -> None:
        """Wait for every job; cancel what is still running after `grace` seconds."""
        await finish_or_cancel(self._tasks, grace, "background jobs")

    async def _run(self, job: Coroutine[Any, Any, None], name: str) -> None:
        async with self._slots:
            try:
                await job
            except Exception:
                log.exception("background job %s failed", name)


async def finish_or_cancel(tasks: set[asyncio.Task[None]], grace: float, what: str) -> None:
    """Wait up to `grace` seconds for `tasks`, then cancel and reap the rest."""
    if not tasks:
        return
    _done, late = await asyncio.wait(set(tasks), timeout=grace)
    for task in late:
        task.cancel()
    if late:
        log.warning("cancelled %d %s still running at shutdown", len(late), what)
        await asyncio.gather(*late, return_exceptions=True)
