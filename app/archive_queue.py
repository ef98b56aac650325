"""Live messages into the archive in the background, with a bounded backlog per workspace.

A workspace has at most `max_backlog` archive jobs accepted and not finished. A message past
that is not held in memory: its channel is queued at once for a re-read of its history from the
newest message (a backfill, recorded in the database, so a crash cannot lose it), and queued
again once the workspace's backlog is down to half, so the re-read starts after the last
message skipped and stores them all.

A job that fails (a store away) is tried again with backoff (`app.retry`), then handed to
`stranded` (the intake runs it again later, `Intake.strand`). `settled` is called once a
message is stored, or once the re-read that will store it is recorded: the intake then
forgets it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from app.backfill import ChannelReader
from app.background import TaskPool
from app.retry import Backoff, CountsRetries, retrying
from app.team_halts import TeamHalts

log = logging.getLogger("lore.archive_queue")

Job = Callable[[], Coroutine[Any, Any, None]]
Settled = Callable[[], Coroutine[Any, Any, None]]
Stranded = Callable[[Job], None]
"""Takes a job whose retries were used up, to be run again later."""


class Rereads(Protocol):
    """Queues a channel for a full re-read of its history (the backfill service)."""

    async def reread(self, reader: ChannelReader, channel_id: str) -> None:
        """Read `channel_id` again from its newest message."""
        ...  # pragma: no cover - protocol


class CountsDeferred(CountsRetries, Protocol):
    def archive_deferred(self) -> None:
        """One live message left to a re-read of its channel (the metrics)."""
        ...  # pragma: no cover - protocol


class ArchiveQueue:
    """Runs archive jobs in `pool`, at most `max_backlog` per workspace at once; re-reads
    are queued in a pool of their own, so they never wait behind the backlog."""

    def __init__(
        self,
        pool: TaskPool,
        rereads: Rereads,
        max_backlog: int,
        counts: CountsDeferred,
        backoff: Backoff | None = None,
    ) -> None:
        self._pool = pool
        self._rereads = rereads
        self._max_backlog = max_backlog
        self._counts = counts
        self._backoff = backoff or Backoff()
        self._backlog: Counter[str] = Counter()
        self._skipped: dict[str, dict[str, ChannelReader]] = {}
        self._skipped_settled: dict[str, list[Settled]] = {}
        self._rereading = TaskPool(1)
        self._in_flight: dict[tuple[str, str, str], Counter[str]] = {}  # by thread
        self._queuing: Counter[tuple[str, str]] = Counter()
        self._lost: Counter[tuple[str, str]] = Counter()  # failed archive jobs, by channel
        self._halts = TeamHalts()

    async def halt_team(self, team_id: str) -> None:
        """The workspace is being forgotten: none of its jobs submitted so far or until
        `resume_team` runs from now on (their intake entries are let go); returns once its jobs
        running now have ended."""
        await self._halts.halt(team_id)

    def resume_team(self, team_id: str) -> None:
        self._halts.resume(team_id)

    def backlog(self, team_id: str) -> int:
        """The workspace's archive jobs accepted and not finished."""
        return self._backlog[team_id]

    def submit(
        self,
        team_id: str,
        channel_id: str,
        job: Job,
        reader: Callable[[], ChannelReader],
        settled: Settled | None = None,
        *,
        ts: str | None = None,
        thread_ts: str | None = None,
        stranded: Stranded | None = None,
    ) -> bool:
        """Run `job()` in the background; False if the backlog is full and the channel will be
        read again instead (through the reader that `reader()` makes). `ts` (in the thread
        `thread_ts`, default its own): the message the job stores, known to be on its way
        until the job ends (`unsettled`)."""
        if self._halts.halted(team_id):
            self._let_go(settled)
            return True
        if self._backlog[team_id] >= self._max_backlog:
            if settled is not None:
                self._skipped_settled.setdefault(team_id, []).append(settled)
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
        thread = (team_id, channel_id, thread_ts or ts) if ts is not None else None
        if thread is not None and ts is not None:
            self._in_flight.setdefault(thread, Counter())[ts] += 1
        stamp = self._halts.stamp(team_id)
        run = self._run(team_id, job, channel_id, thread, ts, settled, stamp, stranded)
        self._pool.spawn(run, name="archive")
        return True

    def submit_change(
        self,
        team_id: str,
        job: Job,
        settled: Settled | None = None,
        stranded: Stranded | None = None,
    ) -> None:
        """Run an edit or deletion `job()` in the background; never deferred, since a re-read
        would not take back a deleted message."""
        if self._halts.halted(team_id):
            self._let_go(settled)
            return
        stamp = self._halts.stamp(team_id)
        run = self._run_change(team_id, job, settled, stamp, stranded)
        self._pool.spawn(run, name="archive-change")

    def _let_go(self, settled: Settled | None) -> None:
        """A job of a workspace being forgotten: nothing runs, its intake entry is let go."""
        if settled is not None:
            self._pool.spawn(settled(), name="archive-let-go")

    async def _work(self, team_id: str, job: Job, stamp: int, what: str) -> None:
        """Run `job` with retries unless the workspace was halted since it was submitted."""
        if self._halts.stale(team_id, stamp):
            return
        with self._halts.running(team_id):
            await retrying(job, self._backoff, self._counts, what=what)

    def unsettled(self, team_id: str, channel_id: str, thread_ts: str, before_ts: str) -> bool:
        """Whether a message of the thread older than `before_ts` reached this process and is
        not stored yet: its archive job still runs, or one of the channel's failed or was
        left to a re-read."""
        key = (team_id, channel_id)
        if channel_id in self._skipped.get(team_id, {}) or self._queuing[key] or self._lost[key]:
            return True
        waiting = self._in_flight.get((team_id, channel_id, thread_ts))
        limit = float(before_ts)
        return waiting is not None and any(float(ts) < limit for ts in waiting)

    async def _run_change(
        self,
        team_id: str,
        job: Job,
        settled: Settled | None,
        stamp: int,
        stranded: Stranded | None,
    ) -> None:
        try:
            await self._work(team_id, job, stamp, "archiving an edit or deletion")
        except Exception:
            if stranded is None:
                raise
            stranded(job)
            return
        if settled is not None:
            await settled()

    async def _run(
        self,
        team_id: str,
        job: Job,
        channel_id: str,
        thread: tuple[str, str, str] | None,
        ts: str | None,
        settled: Settled | None,
        stamp: int,
        stranded: Stranded | None,
    ) -> None:
        try:
            try:
                await self._work(team_id, job, stamp, "archiving a message")
            except Exception:
                self._lost[(team_id, channel_id)] += 1
                if stranded is None:
                    raise
                stranded(self._found_later(team_id, channel_id, job))
                return
            if settled is not None:
                await settled()
        finally:
            if thread is not None and ts is not None:
                self._settled(thread, ts)
            self._backlog[team_id] -= 1
            if self._backlog[team_id] <= 0:
                del self._backlog[team_id]
            if team_id in self._skipped and self._backlog[team_id] <= self._max_backlog // 2:
                skipped = self._skipped.pop(team_id)
                settle = self._skipped_settled.pop(team_id, [])
                self._rereading.spawn(self._reread(team_id, skipped, settle), name="archive-reread")

    def _found_later(self, team_id: str, channel_id: str, job: Job) -> Job:
        """`job`, once run again later: when it succeeds, its channel has one failed job less."""

        async def again() -> None:
            await job()
            key = (team_id, channel_id)
            self._lost[key] -= 1
            if self._lost[key] <= 0:
                del self._lost[key]

        return again

    async def rereads_queued(self) -> None:
        """Return once every re-read decided so far has been queued with the backfill."""
        await self._rereading.wait_idle()

    async def drain(self, grace: float = 10.0) -> None:
        """Finish queuing the re-reads (at shutdown, after the archive jobs have drained)."""
        await self._rereading.drain(grace)

    def _settled(self, thread: tuple[str, str, str], ts: str) -> None:
        waiting = self._in_flight[thread]
        waiting[ts] -= 1
        if waiting[ts] <= 0:
            del waiting[ts]
        if not waiting:
            del self._in_flight[thread]

    async def _reread(
        self, team_id: str, channels: dict[str, ChannelReader], settle: Sequence[Settled] = ()
    ) -> None:
        log.info("reading %d channels of %s again (archive backlog full)", len(channels), team_id)
        for channel_id in channels:
            self._queuing[(team_id, channel_id)] += 1
        try:
            for channel_id, reader in channels.items():
                await self._rereads.reread(reader, channel_id)
        finally:
            for channel_id in channels:
                self._queuing[(team_id, channel_id)] -= 1
                if self._queuing[(team_id, channel_id)] <= 0:
                    del self._queuing[(team_id, channel_id)]
        for settled in settle:
            await settled()
