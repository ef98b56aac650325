"""Live messages into the archive in the background, with a bounded backlog per workspace.

A workspace has at most `max_backlog` archive jobs accepted and not finished. A message past
that is not held in memory: its channel is queued at once for a re-read of its history from the
newest message (a backfill, recorded in the database, so a crash cannot lose it), and queued
again once the workspace's backlog is down to half, so the re-read starts after the last
message skipped and stores them all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from app.backfill import ChannelReader
from app.background import TaskPool

log = logging.getLogger("lore.archive_queue")

Job = Callable[[], Coroutine[Any, Any, None]]


class Rereads(Protocol):
    """Queues a channel for a full re-read of its history (the backfill service)."""

    async def reread(self, reader: ChannelReader, channel_id: str) -> None:
        """Read `channel_id` again from its newest message."""
        ...  # pragma: no cover - protocol


class CountsDeferred(Protocol):
    def archive_deferred(self) -> None:
        """One live message left to a re-read of its channel (the metrics)."""
        ...  # pragma: no cover - protocol


class ArchiveQueue:
    """Runs archive jobs in `pool`, at most `max_backlog` per workspace at once; re-reads
    are queued in a pool of their own, so they never wait behind the backlog."""

    def __init__(
        self, pool: TaskPool, rereads: Rereads, max_backlog: int, counts: CountsDeferred
    ) -> None:
        self._pool = pool
        self._rereads = rereads
        self._max_backlog = max_backlog
        self._counts = counts
        self._backlog: Counter[str] = Counter()
        self._skipped: dict[str, dict[str, ChannelReader]] = {}
        self._rereading = TaskPool(1)

    def backlog(self, team_id: str) -> int:
        """The workspace's archive jobs accepted and not finished."""
        return self._backlog[team_id]

    def submit(
        self, team_id: str, channel_id: str, job: Job, reader: Callable[[], ChannelReader]
    ) -> bool:
        """Run `job()` in the background; False if the backlog is full and the channel will be
        read again instead (through the reader that `reader()` makes)."""
        if self._backlog[team_id] >= self._max_backlog:
            skipped = self._skipped.setdefault(team_id, {})
            if not skipped:
                log.warning(
                    "archive backlog of %s is full (%d jobs); skipped channels will be read "
                    "again from their history",
                    team_id,
                    self._max_backlog,
                )
            if channel_id not in skipped:
                skipped[channel_id] = reader()
                self._rereading.spawn(
                    self._reread(team_id, {channel_id: skipped[channel_id]}), name="archive-reread"
                )
            self._counts.archive_deferred()
            return False
        self._backlog[team_id] += 1
        self._pool.spawn(self._run(team_id, job), name="archive")
        return True

    async def _run(self, team_id: str, job: Job) -> None:
        try:
            await job()
        finally:
            self._backlog[team_id] -= 1
            if self._backlog[team_id] <= 0:
                del self._backlog[team_id]
            if team_id in self._skipped and self._backlog[team_id] <= self._max_backlog // 2:
                skipped = self._skipped.pop(team_id)
                self._rereading.spawn(self._reread(team_id, skipped), name="archive-reread")

    async def rereads_queued(self) -> None:
        """Return once every re-read decided so far has been queued with the backfill."""
        await self._rereading.wait_idle()

    async def drain(self, grace: float = 10.0) -> None:
        """Finish queuing the re-reads (at shutdown, after the archive jobs have drained)."""
        await self._rereading.drain(grace)

    async def _reread(self, team_id: str, channels: dict[str, ChannelReader]) -> None:
        log.info("reading %d channels of %s again (archive backlog full)", len(channels), team_id)
        for channel_id, reader in channels.items():
            await self._rereads.reread(reader, channel_id)
