"""Archiving of incoming messages in small batches, so embedding runs once per batch."""

from __future__ import annotations

import asyncio
import logging

from memory.archive import Archive, ArchivedMessage

log = logging.getLogger("lore.ingest")

BATCH = 64


class Ingest:
    """Collects messages into batches for the archive; `add` returns once its batch is stored.

    A batch waits `linger` seconds for company: fewer, larger batches cost the event loop less.
    """

    def __init__(self, archive: Archive, linger: float = 0.05) -> None:
        self._archive = archive
        self._linger = linger
        self._waiting: list[tuple[ArchivedMessage, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add(self, message: ArchivedMessage) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="ingest")
        await done

    async def update_text(self, team_id: str, channel_id: str, ts: str, text: str) -> None:
        await self._archive.update_text(team_id, channel_id, ts, text)

    async def delete(self, team_id: str, channel_id: str, ts: str) -> None:
        await self._archive.delete(team_id, channel_id, ts)

    async def _flush(self) -> None:
        await asyncio.sleep(self._linger)
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            try:
                await self._archive.add([message for message, _ in batch])
            except Exception as error:
                log.exception("archiving %d messages failed", len(batch))
                for _, done in batch:
                    done.set_exception(error)
            else:
                for _, done in batch:
                    done.set_result(None)
