"""Archiving of incoming messages in small batches, so embedding runs once per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from memory.archive import Archive, ArchivedMessage
from memory.early_changes import Change, EarlyChanges, LocalEarlyChanges, MessageId

log = logging.getLogger("lore.ingest")

BATCH = 64


class Ingest:
    """Collects messages into batches for the archive; `add` returns once its batch is stored.

    A batch waits `linger` seconds for company: fewer, larger batches cost the event loop less.
    At most `max_pending` messages wait or are being stored; a further `add` waits for room
    (backpressure on the background task that archives), so nothing is dropped.

    An edit or deletion may overtake its message (Slack sends them seconds apart; the message
    waits for its batch, for its author's name, or in another process). It waits for a message
    being stored here; for one not archived yet it is kept in `early` (Redis when several
    processes share the archive), which each batch consults before and after it is stored.
    """

    def __init__(
        self,
        archive: Archive,
        linger: float = 0.05,
        max_pending: int = 1000,
        early: EarlyChanges | None = None,
    ) -> None:
        self._archive = archive
        self._early: EarlyChanges = early if early is not None else LocalEarlyChanges()
        self._linger = linger
        self._room = asyncio.Semaphore(max_pending)
        self._pending = 0
        self._held_back = 0
        self._waiting: list[tuple[ArchivedMessage, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._storing: dict[MessageId, asyncio.Future[None]] = {}

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

    async def archived(self, team_id: str, channel_id: str, ts: str) -> bool:
        """Whether the message is in the archive (or being stored now)."""
        await self._stored((team_id, channel_id, ts))
        return await self._archive.get(team_id, channel_id, ts) is not None

    async def update_text(self, team_id: str, channel_id: str, ts: str, text: str) -> None:
        await self._change((team_id, channel_id, ts), text)

    async def delete(self, team_id: str, channel_id: str, ts: str) -> None:
        await self._change((team_id, channel_id, ts), None)

    async def _change(self, key: MessageId, change: Change) -> None:
        """Apply a change, or keep it for the message's batch. A batch takes kept changes after
        it is stored, and the change here looks for its message after keeping it: so one of
        the two sees the other even when they run in different processes."""
        await self._stored(key)
        if await self._apply(key, change):
            return
        await self._early.keep(key, change)
        if await self._archive.get(*key) is not None:
            for taken in (await self._early.take([key])).values():
                await self._apply(key, taken)

    async def _apply(self, key: MessageId, change: Change) -> bool:
        """Edit or delete an archived message; False if it is not archived."""
        if change is None:
            return await self._archive.delete(*key)
        return await self._archive.update_text(*key, change)

    def _forget_storing(self, key: MessageId, done: asyncio.Future[None]) -> None:
        if self._storing.get(key) is done:
            del self._storing[key]

    async def _stored(self, key: MessageId) -> None:
        """Wait while the message `key` is being stored (its failure is reported by `add`)."""
        storing = self._storing.get(key)
        if storing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(storing)

    async def _store(self, messages: list[ArchivedMessage]) -> None:
        """Archive a batch with the changes that overtook its messages applied."""
        keys = [(m.team_id, m.channel_id, m.ts) for m in messages]
        early = await self._early.take(keys)
        kept = [
            m if key not in early else replace(m, text=early[key] or "")
            for m, key in zip(messages, keys, strict=True)
            if key not in early or early[key] is not None  # else deleted before it was stored
        ]
        await self._archive.add(kept)
        for key, change in (await self._early.take(keys)).items():
            await self._apply(key, change)

    async def _flush(self) -> None:
        await asyncio.sleep(self._linger)
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            try:
                await self._store([message for message, _ in batch])
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
