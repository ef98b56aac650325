"""The backfill service: channels to read are queued durably, one worker per workspace reads
them one at a time in the background, and shutdown stops the workers between pages.

Across processes, a workspace is read by the holder of its lease (`backfill:<team>`, in Redis
when there is one), so no channel is read by two processes at once and the workspace's pace
holds. A worker whose lease another process holds waits for it, then reads what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from app.backfill.channel import ChannelJob, Paces, Progress, Superseded
from app.backfill.pace import Pace
from app.backfill.reader import ChannelReader
from app.background import finish_or_cancel
from memory.archive import Archive
from memory.backfill_state import DONE, RUNNING, BackfillState
from memory.backfill_state import ChannelBackfill as ChannelStatus
from memory.locks import Leases, LocalLeases

log = logging.getLogger("lore.backfill")

MAX_WORKSPACES = 4  # workspaces backfilled at once by one process (each one channel at a time)
EXCLUDED = "excluded from the archive by an admin"
LEASE_POLL = 5.0  # seconds between attempts at a workspace lease another process holds
ADOPT_EVERY = 60.0  # seconds between looks for backfills a dead process left running

Excluded = Callable[[str, str], Awaitable[bool]]  # (team_id, channel_id) -> kept out?
Readers = Callable[[str], Awaitable[ChannelReader | None]]  # team_id -> its reader, if any


class BackfillBusy(Exception):
    """Another process is backfilling the workspace now; it reads the channels queued too."""

    def __init__(self, team_id: str) -> None:
        super().__init__(f"another process is backfilling {team_id} now")
        self.team_id = team_id


@dataclass(frozen=True)
class BackfillLimits:
    """Pace per method (requests a minute) and messages per page."""

    history_per_minute: float = 50.0
    replies_per_minute: float = 50.0
    page_size: int = 200


class Backfill:
    """Reads the history of channels Lore joins into the archive, resumably."""

    def __init__(
        self,
        archive: Archive,
        state: BackfillState,
        limits: BackfillLimits,
        is_excluded: Excluded | None = None,
        leases: Leases | None = None,
        lease_poll: float = LEASE_POLL,
    ) -> None:
        self._archive = archive
        self._is_excluded = is_excluded
        self.state = state
        self._limits = limits
        self._leases: Leases = leases if leases is not None else LocalLeases()
        self._lease_poll = lease_poll
        self._halts: set[asyncio.Event] = set()
        self._adopter: asyncio.Task[None] | None = None
        self._readers: dict[str, ChannelReader] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._paces: dict[str, Paces] = {}
        self._slots = asyncio.Semaphore(MAX_WORKSPACES)
        self._stop = asyncio.Event()
        self._halted: set[str] = set()

    async def request(self, reader: ChannelReader, channel_id: str, again: bool = False) -> None:
        """Queue a channel and make sure its workspace's worker runs; a channel already done is
        read again only if `again` (e.g. Lore re-joined it and may have missed messages)."""
        if reader.team_id in self._halted:
            return
        found = await self.state.request(reader.team_id, channel_id)
        if again and found.status == DONE:
            await self.state.restart(reader.team_id, channel_id)
        self._wake(reader)

    async def reread(self, reader: ChannelReader, channel_id: str) -> None:
        """Read a channel again from its newest message, whatever its state: a read in
        progress starts over, so messages newer than its start are read too."""
        if reader.team_id in self._halted:
            return
        await self.state.request(reader.team_id, channel_id)
        await self.state.restart(reader.team_id, channel_id)
        self._wake(reader)

    async def request_member_channels(self, reader: ChannelReader) -> list[str]:
        """Queue every channel the bot is a member of (e.g. right after an install)."""
        if reader.team_id in self._halted:
            return []
        channels = await reader.member_channels()
        for channel_id in channels:
            await self.state.request(reader.team_id, channel_id)
        if channels:
            self._wake(reader)
        return channels

    async def resume(self, readers: Readers) -> list[str]:
        """Restart the workers of workspaces with unfinished channels; the teams resumed."""
        resumed = []
        for team_id in await self.state.teams_unfinished():
            reader = await readers(team_id)
            if reader is not None:
                self._wake(reader)
                resumed.append(team_id)
        return resumed

    def keep_adopting(self, readers: Readers, every: float = ADOPT_EVERY) -> None:
        """Run `adopt` in the background until shutdown (once per service)."""
        if self._adopter is None and not self._stop.is_set():
            self._adopter = asyncio.create_task(self.adopt(readers, every), name="backfill-adopt")

    async def adopt(self, readers: Readers, every: float = ADOPT_EVERY) -> None:
        """Until shutdown, every `every` seconds: start a worker for each workspace with a
        channel marked running that no worker here reads. Its reader may be another process
        (the worker then waits for the lease) or one that died: once its lease expires, the
        worker takes the backfill over from its saved position."""
        while not await _set_within(self._stop, every):
            try:
                for team_id in await self.state.teams_unfinished():
                    if self.running(team_id) or (reader := await readers(team_id)) is None:
                        continue
                    if any(s.status == RUNNING for s in await self.state.status(team_id)):
                        self._wake(reader)
            except Exception:
                log.exception("looking for backfills left running failed")

    async def status(self, team_id: str) -> list[ChannelStatus]:
        """Each channel's backfill of a workspace (status, messages archived, last error)."""
        return await self.state.status(team_id)

    def running(self, team_id: str) -> bool:
        """Whether this process has a worker for the workspace (reading, or awaiting the lease)."""
        worker = self._workers.get(team_id)
        return worker is not None and not worker.done()

    def pacing(self, team_id: str) -> bool:
        """Whether the workspace's backfill is waiting for its pace to allow the next call."""
        paces = self._paces.get(team_id)
        return paces is not None and (paces.history.waiting or paces.replies.waiting)

    async def run(
        self,
        reader: ChannelReader,
        channels: list[str],
        progress: Progress | None = None,
        again: bool = False,
    ) -> list[ChannelStatus]:
        """Backfill `channels` now, in the foreground (the CLI); their status afterwards.

        Raises BackfillBusy if another process holds the workspace's lease; the channels are
        queued by then, so that process reads them too."""
        team_id = reader.team_id
        for channel_id in channels:
            found = await self.state.request(team_id, channel_id)
            if again and found.status == DONE:
                await self.state.restart(team_id, channel_id)
        async with self._leased(team_id) as halt:
            if halt is None:
                raise BackfillBusy(team_id)
            for channel_id in channels:
                current = await self.state.get(team_id, channel_id)
                if current is not None and current.status != DONE and not halt.is_set():
                    await self._channel(reader, channel_id, halt, progress)
        return [s for s in await self.state.status(team_id) if s.channel_id in set(channels)]

    async def delete_team(self, team_id: str) -> None:
        """Stop the workspace's backfill and forget its progress (uninstall)."""
        await self._cancel(team_id)
        await self.state.delete_team(team_id)

    async def halt_team(self, team_id: str) -> None:
        """Cancel the workspace's backfill in this process and start none until `resume_team`
        (the workspace is being forgotten)."""
        self._halted.add(team_id)
        await self._cancel(team_id)

    def resume_team(self, team_id: str) -> None:
        self._halted.discard(team_id)

    async def _cancel(self, team_id: str) -> None:
        worker = self._workers.pop(team_id, None)
        self._readers.pop(team_id, None)
        self._paces.pop(team_id, None)
        self._again.discard(team_id)
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def close(self, grace: float = 5.0) -> None:
        """Stop every worker after its current page (cancel after `grace` seconds)."""
        self._stop.set()
        for halt in self._halts:
            halt.set()
        tasks = set(self._workers.values())
        if self._adopter is not None:
            tasks.add(self._adopter)
        await finish_or_cancel(tasks, grace, "backfills")

    def _wake(self, reader: ChannelReader) -> None:
        team_id = reader.team_id
        if team_id in self._halted:
            return
        self._readers[team_id] = reader  # the newest token wins
        if self._stop.is_set():
            return
        if self.running(team_id):
            self._again.add(team_id)
            return
        self._workers[team_id] = asyncio.create_task(
            self._work(team_id), name=f"backfill-{team_id}"
        )

    async def _work(self, team_id: str) -> None:
        """Take the workspace's lease (waiting while another process holds it), then read its
        unfinished channels; a lease lost midway is waited for again. It ends when the worker
        is no longer the workspace's (delete_team) even if redis-py swallowed the cancel."""
        while not self._stop.is_set() and self._workers.get(team_id) is asyncio.current_task():
            async with self._slots, self._leased(team_id) as halt:
                if halt is not None:
                    await self._drain(team_id, halt)
                    if not halt.is_set():
                        return
            await _set_within(self._stop, self._lease_poll)

    async def _drain(self, team_id: str, halt: asyncio.Event) -> None:
        """Read the workspace's unfinished channels one at a time until none is left."""
        failed: set[str] = set()
        while not halt.is_set():
            self._again.discard(team_id)
            todo = [c for c in await self.state.unfinished(team_id) if c not in failed]
            for channel_id in todo:
                if halt.is_set():
                    return
                if not await self._channel(self._readers[team_id], channel_id, halt):
                    failed.add(channel_id)
            if not todo and team_id not in self._again:
                return

    @contextlib.asynccontextmanager
    async def _leased(self, team_id: str) -> AsyncIterator[asyncio.Event | None]:
        """Hold the workspace's lease: yields an event set at shutdown or if the lease is lost,
        or None (at once) while another process holds it."""
        lease = await self._leases.acquire(f"backfill:{team_id}")
        if lease is None:
            yield None
            return
        halt = asyncio.Event()
        self._halts.add(halt)
        if self._stop.is_set():
            halt.set()
        watcher = asyncio.create_task(_set_when(lease.lost, halt), name="backfill-lease")
        try:
            yield halt
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self._halts.discard(halt)
            await asyncio.shield(lease.release())

    async def _channel(
        self,
        reader: ChannelReader,
        channel_id: str,
        halt: asyncio.Event,
        progress: Progress | None = None,
    ) -> bool:
        """Backfill one channel; False if it failed (logged and recorded) or was stopped.

        True also when the channel was restarted or forgotten meanwhile (Superseded): what is
        left of it is read again from the queue."""
        team_id = reader.team_id
        if self._is_excluded is not None and await self._is_excluded(team_id, channel_id):
            log.info("backfill of %s/%s skipped: %s", team_id, channel_id, EXCLUDED)
            await self.state.pause(team_id, channel_id, EXCLUDED)
            return False
        paces = self._paces.setdefault(
            team_id,
            Paces(Pace(self._limits.history_per_minute), Pace(self._limits.replies_per_minute)),
        )
        job = ChannelJob(
            self._archive,
            self.state,
            reader,
            paces,
            self._limits.page_size,
            halt,
            progress,
            self._is_excluded,
        )
        try:
            if await job.run(channel_id):
                return True
            if self._stop.is_set():  # else the lease was lost: its new holder reads the channel
                await self.state.pause(team_id, channel_id)
            return False
        except Superseded as why:
            log.info("backfill of %s/%s stopped: %s", team_id, channel_id, why)
            return True
        except asyncio.CancelledError:
            await asyncio.shield(self.state.pause(team_id, channel_id, "stopped at shutdown"))
            raise
        except Exception as error:
            log.exception("backfill of %s/%s failed", team_id, channel_id)
            await self.state.pause(team_id, channel_id, _describe(error))
            return False


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def _describe(error: Exception) -> str:
    """A short, secret-free description of a failure (Slack's error code when there is one)."""
    response = getattr(error, "response", None)
    code = response.get("error") if response is not None and hasattr(response, "get") else None
    return f"{type(error).__name__}: {code}" if code else type(error).__name__
