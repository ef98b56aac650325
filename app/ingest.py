"""Archiving of incoming messages in small batches, so embedding runs once per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import replace

from memory.archive import Archive, ArchivedMessage

log = logging.getLogger("lore.ingest")

BATCH = 64
MAX_EARLY_CHANGES = 10_000
MessageId = tuple[str, str, str]  # (team, channel, ts)


class Ingest:
    """Collects messages into batches for the archive; `add` returns once its batch is stored.

    A batch waits `linger` seconds for company: fewer, larger batches cost the event loop less.
    At most `max_pending` messages wait or are being stored; a further `add` waits for room
    (backpressure on the background task that archives), so nothing is dropped.

    An edit or deletion may overtake its message (Slack sends them seconds apart; the message
    waits for its batch, or for its author's name). It waits for a message being stored; for
    one not seen yet it is kept (the newest `MAX_EARLY_CHANGES`) and applied when it arrives.
    """

    def __init__(self, archive: Archive, linger: float = 0.05, max_pending: int = 1000) -> None:
        self._archive = archive
        self._linger = linger
        self._room = asyncio.Semaphore(max_pending)
        self._pending = 0
        self._held_back = 0
        self._waiting: list[tuple[ArchivedMessage, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._storing: dict[MessageId, asyncio.Future[None]] = {}
        self._early: OrderedDict[MessageId, str | None] = OrderedDict()  # None: deleted

    @property
    def pending(self) -> int:
        """Messages accepted and not yet stored (at most `max_pending`)."""
        return self._pending

    @property
    def held_back(self) -> int:
        """Calls of `add` waiting for room."""
        return self._held_back

    async def add(self, message: ArchivedMessage) -> None:
        key = (message.team_id, message.channel_id, message.ts)
        if key in self._early:
            changed = self._early.pop(key)
            if changed is None:
                return  # deleted before it was stored
            message = replace(message, text=changed)
        self._held_back += 1
        try:
            await self._room.acquire()
        finally:
            self._held_back -= 1
        self._pending += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, done))
        self._storing[key] = done
        done.add_done_callback(lambda _: self._forget_storing(key, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="ingest")
        await done

    async def update_text(self, team_id: str, channel_id: str, ts: str, text: str) -> None:
        key = (team_id, channel_id, ts)
        await self._stored(key)
        if not await self._archive.update_text(team_id, channel_id, ts, text):
            self._remember(key, text)

    async def delete(self, team_id: str, channel_id: str, ts: str) -> None:
        key = (team_id, channel_id, ts)
        await self._stored(key)
        if not await self._archive.delete(team_id, channel_id, ts):
            self._remember(key, None)

    def _forget_storing(self, key: MessageId, done: asyncio.Future[None]) -> None:
        if self._storing.get(key) is done:
            del self._storing[key]

    async def _stored(self, key: MessageId) -> None:
        """Wait while the message `key` is being stored (its failure is reported by `add`)."""
        storing = self._storing.get(key)
        if storing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(storing)

    def _remember(self, key: MessageId, text: str | None) -> None:
        """Keep a change to a message not stored yet, for `add` to apply."""
        self._early[key] = text
        self._early.move_to_end(key)
        while len(self._early) > MAX_EARLY_CHANGES:
            self._early.popitem(last=False)

    async def _flush(self) -> None:
        await asyncio.sleep(self._linger)
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            try:
                await self._archive.add([message for message, _ in batch])
            except Exception as error:
                log.exception("archiving %d messages failed", len(batch))
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
            finally:
                self._pending -= len(batch)
                for _ in batch:
                    self._room.release()
