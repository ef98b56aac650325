"""Turn ordering: one at a time per conversation, in arrival order; bounded per workspace."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from app.background import finish_or_cancel

log = logging.getLogger("lore.turns")

Job = Callable[[], Awaitable[None]]
ConversationKey = tuple[str, str, str]


class TurnQueue:
    """Serial queues keyed by (team, channel, thread_ts); a worker exists only while busy."""

    def __init__(self, per_workspace: int) -> None:
        self._per_workspace = per_workspace
        self._queues: dict[ConversationKey, deque[Job]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._workers: set[asyncio.Task[None]] = set()

    def submit(self, key: ConversationKey, job: Job) -> None:
        """Queue `job` behind earlier jobs of the same conversation; never blocks."""
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        worker = asyncio.create_task(self._work(key), name=f"turns:{':'.join(key)}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    @property
    def depth(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def drain(self, grace: float = 60.0) -> None:
        """Let queued turns finish; cancel any still running after `grace` seconds."""
        await finish_or_cancel(self._workers, grace, "conversations")

    async def _work(self, key: ConversationKey) -> None:
        queue = self._queues[key]
        slots = self._slots.setdefault(key[0], asyncio.Semaphore(self._per_workspace))
        try:
            while queue:
                job = queue[0]
                async with slots:
                    try:
                        await job()
                    except Exception:
                        log.exception("turn failed in %s", key)
                queue.popleft()
        finally:
            del self._queues[key]
