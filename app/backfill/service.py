"""The backfill service: channels to read are queued durably, one worker per workspace reads
them one at a time in the background, and shutdown stops the workers between pages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.backfill.channel import ChannelJob, Paces, Progress
from app.backfill.pace import Pace
from app.backfill.reader import ChannelReader
from app.background import finish_or_cancel
from memory.archive import Archive
from memory.backfill_state import DONE, BackfillState
from memory.backfill_state import ChannelBackfill as ChannelStatus

log = logging.getLogger("lore.backfill")

MAX_WORKSPACES = 4  # workspaces backfilled at once by one process (each one channel at a time)
EXCLUDED = "excluded from the archive by an admin"

Excluded = Callable[[str, str], Awaitable[bool]]  # (team_id, channel_id) -> kept out?


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
    ) -> None:
        self._archive = archive
        self._is_excluded = is_excluded
        self.state = state
        self._limits = limits
        self._readers: dict[str, ChannelReader] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._paces: dict[str, Paces] = {}
        self._slots = asyncio.Semaphore(MAX_WORKSPACES)
        self._stop = asyncio.Event()

    async def request(self, reader: ChannelReader, channel_id: str, again: bool = False) -> None:
        """Queue a channel and make sure its workspace's worker runs; a channel already done is
        read again only if `again` (e.g. Lore re-joined it and may have missed messages)."""
        found = await self.state.request(reader.team_id, channel_id)
        if again and found.status == DONE:
            await self.state.restart(reader.team_id, channel_id)
        self._wake(reader)

    async def request_member_channels(self, reader: ChannelReader) -> list[str]:
        """Queue every channel the bot is a member of (e.g. right after an install)."""
        channels = await reader.member_channels()
        for channel_id in channels:
            await self.state.request(reader.team_id, channel_id)
        if channels:
            self._wake(reader)
        return channels

    async def resume(self, readers: Callable[[str], ChannelReader | None]) -> list[str]:
        """Restart the workers of workspaces with unfinished channels; the teams resumed."""
        resumed = []
        for team_id in await self.state.teams_unfinished():
            reader = readers(team_id)
            if reader is not None:
                self._wake(reader)
                resumed.append(team_id)
        return resumed

    async def status(self, team_id: str) -> list[ChannelStatus]:
        """Each channel's backfill of a workspace (status, messages archived, last error)."""
        return await self.state.status(team_id)

    def running(self, team_id: str) -> bool:
        worker = self._workers.get(team_id)
        return worker is not None and not worker.done()

    async def run(
        self,
        reader: ChannelReader,
        channels: list[str],
        progress: Progress | None = None,
        again: bool = False,
    ) -> list[ChannelStatus]:
        """Backfill `channels` now, in the foreground (the CLI); their status afterwards."""
        team_id = reader.team_id
        for channel_id in channels:
            found = await self.state.request(team_id, channel_id)
            if again and found.status == DONE:
                await self.state.restart(team_id, channel_id)
        for channel_id in channels:
            current = await self.state.get(team_id, channel_id)
            if current is not None and current.status != DONE:
                await self._channel(reader, channel_id, progress)
        return [s for s in await self.state.status(team_id) if s.channel_id in set(channels)]

    async def delete_team(self, team_id: str) -> None:
        """Stop the workspace's backfill and forget its progress (uninstall)."""
        worker = self._workers.pop(team_id, None)
        self._readers.pop(team_id, None)
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await self.state.delete_team(team_id)

    async def close(self, grace: float = 5.0) -> None:
        """Stop every worker after its current page (cancel after `grace` seconds)."""
        self._stop.set()
        await finish_or_cancel(set(self._workers.values()), grace, "backfills")

    def _wake(self, reader: ChannelReader) -> None:
        team_id = reader.team_id
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
        """Read the workspace's unfinished channels one at a time until none is left."""
        async with self._slots:
            failed: set[str] = set()
            while not self._stop.is_set():
                self._again.discard(team_id)
                todo = [c for c in await self.state.unfinished(team_id) if c not in failed]
                for channel_id in todo:
                    if self._stop.is_set():
                        return
                    if not await self._channel(self._readers[team_id], channel_id):
                        failed.add(channel_id)
                if not todo and team_id not in self._again:
                    return

    async def _channel(
        self, reader: ChannelReader, channel_id: str, progress: Progress | None = None
    ) -> bool:
        """Backfill one channel; False if it failed (logged and recorded) or was stopped."""
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
            self._stop,
            progress,
            self._is_excluded,
        )
        try:
            if await job.run(channel_id):
                return True
            await self.state.pause(team_id, channel_id)
            return False
        except asyncio.CancelledError:
            await asyncio.shield(self.state.pause(team_id, channel_id, "stopped at shutdown"))
            raise
        except Exception as error:
            log.exception("backfill of %s/%s failed", team_id, channel_id)
            await self.state.pause(team_id, channel_id, _describe(error))
            return False


def _describe(error: Exception) -> str:
    """A short, secret-free description of a failure (Slack's error code when there is one)."""
    response = getattr(error, "response", None)
    code = response.get("error") if response is not None and hasattr(response, "get") else None
    return f"{type(error).__name__}: {code}" if code else type(error).__name__
