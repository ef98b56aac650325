"""Writing imported messages to the archive in batches, skipping those already stored."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from memory.archive import Archive, ArchivedMessage, clean_text

BATCH = 256  # messages per Archive.add: one embedding run, one upsert
LOOKUPS = 32  # concurrent Archive.get calls while checking a batch


@dataclass
class WriteCounts:
    """What a write did: stored for the first time, replaced (content differed), or left alone."""

    new: int = 0
    updated: int = 0
    present: int = 0

    @property
    def total(self) -> int:
        return self.new + self.updated + self.present


class BatchWriter:
    """Collects messages and stores them BATCH at a time; only new or changed ones are embedded."""

    def __init__(self, archive: Archive, batch: int = BATCH) -> None:
        self._archive = archive
        self._batch = max(1, batch)
        self._pending: dict[tuple[str, str], ArchivedMessage] = {}
        self._lookups = asyncio.Semaphore(LOOKUPS)
        self.counts = WriteCounts()

    async def add(self, message: ArchivedMessage) -> None:
        """Queue a message (a later one with the same key replaces it); flush a full batch."""
        message = replace(message, text=clean_text(message.text))
        self._pending[(message.team_id, message.key)] = message
        if len(self._pending) >= self._batch:
            await self.flush()

    async def flush(self) -> None:
        """Store what is queued."""
        batch = await self._current(list(self._pending.values()))
        self._pending.clear()
        if not batch:
            return
        stored = await asyncio.gather(*(self._stored(m) for m in batch))
        changed = [m for m, old in zip(batch, stored, strict=True) if old != m]
        if changed:
            await self._archive.add(changed)
        self.counts.new += sum(1 for old in stored if old is None)
        self.counts.updated += sum(
            1 for m, old in zip(batch, stored, strict=True) if old not in (None, m)
        )
        self.counts.present += len(batch) - len(changed)

    async def _current(self, batch: list[ArchivedMessage]) -> list[ArchivedMessage]:
        """The messages with their channel's current kind (an export is a snapshot: a channel
        made private since is private), those of channels deleted since left out."""
        current: list[ArchivedMessage] = []
        for team_id in {m.team_id for m in batch}:
            ours = [m for m in batch if m.team_id == team_id]
            kinds = await self._archive.channel_kinds(team_id, [m.channel_id for m in ours])
            for m in ours:
                if m.channel_id not in kinds:
                    current.append(m)
                elif (kind := kinds[m.channel_id]) is not None:
                    current.append(replace(m, channel_type=kind))
        return current

    async def _stored(self, message: ArchivedMessage) -> ArchivedMessage | None:
        async with self._lookups:
            return await self._archive.get(message.team_id, message.channel_id, message.ts)
