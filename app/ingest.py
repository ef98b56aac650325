"""Archiving of incoming messages in small batches, so embedding runs once per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from memory.archive import Archive, ArchivedMessage
from memory.early_changes import (
    Change,
    EarlyChanges,
    EarlyChangesUnknown,
    LocalEarlyChanges,
    MessageId,
)
from memory.reply_sources import Quote, ReplySources
from memory.summaries import ThreadSummaries

log = logging.getLogger("lore.ingest")

BATCH = 64
MAX_UNCHECKED = 10_000
MAX_RECHECK_DELAY = 10.0


class Ingest:
    """Collects messages into batches for the archive; `add` returns once its batch is stored.

    A batch waits `linger` seconds for company: fewer, larger batches cost the event loop less.
    At most `max_pending` messages wait or are being stored; a further `add` waits for room
    (backpressure on the background task that archives), so nothing is dropped.

    An edit or deletion may overtake its message (Slack sends them seconds apart; the message
    waits for its batch, for its author's name, or in another process). It waits for a message
    being stored here; for one not archived yet it is kept in `early` (Redis when several
    processes share the archive), which each batch consults before and after it is stored.
    When `early` cannot be looked at (Redis away), the batch is stored as it came and its
    messages are looked up again, with backoff, until `early` answers (`rechecking` counts them;
    at most `MAX_UNCHECKED`); a change applied meanwhile wins over the one found later.

    Text taken back leaves Lore's copies too: when a message is deleted, Lore's archived replies
    that quoted it (`replies`) are deleted the same way; when it is edited, those whose quoted
    text it no longer holds are. A thread summary that condensed it (`summaries`) is dropped.
    """

    def __init__(
        self,
        archive: Archive,
        linger: float = 0.05,
        max_pending: int = 1000,
        early: EarlyChanges | None = None,
        replies: ReplySources | None = None,
        summaries: ThreadSummaries | None = None,
        recheck_delay: float = 0.5,
    ) -> None:
        self._archive = archive
        self._replies = replies
        self._summaries = summaries
        self._early: EarlyChanges = early if early is not None else LocalEarlyChanges()
        self._linger = linger
        self._room = asyncio.Semaphore(max_pending)
        self._pending = 0
        self._held_back = 0
        self._waiting: list[tuple[ArchivedMessage, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._storing: dict[MessageId, asyncio.Future[None]] = {}
        self._following: set[asyncio.Task[None]] = set()
        self._halted: set[str] = set()
        self._unchecked: OrderedDict[MessageId, None] = OrderedDict()
        self._recheck_delay = recheck_delay
        self._rechecker: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Messages accepted and not yet stored (at most `max_pending`)."""
        return self._pending

    @property
    def rechecking(self) -> int:
        """Stored messages whose early changes could not be looked at yet."""
        return len(self._unchecked)

    @property
    def held_back(self) -> int:
        """Calls of `add` waiting for room."""
        return self._held_back

    async def halt_team(self, team_id: str) -> None:
        """Drop the workspace's messages waiting for their batch, its changes kept in this
        process, and everything of it that arrives until `resume_team` (it is being forgotten)."""
        self._halted.add(team_id)
        self._early.forget_team(team_id)

    def resume_team(self, team_id: str) -> None:
        self._halted.discard(team_id)

    async def add(self, message: ArchivedMessage) -> None:
        if message.team_id in self._halted:
            return
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

    async def add_reply(self, message: ArchivedMessage, quotes: Sequence[Quote]) -> None:
        """Archive one of Lore's replies, recording first which messages it quoted (so a
        deletion of one of them arriving meanwhile finds the reply, stored or not yet)."""
        if self._replies is not None and quotes:
            await self._replies.record(message.team_id, message.channel_id, message.ts, quotes)
        await self.add(message)

    async def archived(self, team_id: str, channel_id: str, ts: str) -> bool:
        """Whether the message is in the archive (or being stored now)."""
        await self._stored((team_id, channel_id, ts))
        return await self._archive.get(team_id, channel_id, ts) is not None

    async def update_text(self, team_id: str, channel_id: str, ts: str, text: str) -> None:
        await self._change((team_id, channel_id, ts), text)

    async def delete(self, team_id: str, channel_id: str, ts: str) -> None:
        await self._change((team_id, channel_id, ts), None)

    async def set_channel_type(self, team_id: str, channel_id: str, channel_type: str) -> int:
        """A channel made private or public: its archived messages take the new kind now."""
        return await self._archive.set_channel_type(team_id, channel_id, channel_type)

    async def remove_channel(self, team_id: str, channel_id: str) -> int:
        """A channel deleted in Slack: its messages go, and Lore's replies elsewhere that
        quoted them. How many of the channel's messages there were."""
        removed = await self._archive.remove_channel(team_id, channel_id)
        if self._summaries is not None:
            await self._summaries.delete_channel(team_id, channel_id)
        if self._replies is not None:
            quoting = await self._replies.quoting_channel(team_id, channel_id)
            await self._replies.forget_channel(team_id, channel_id)
            for reply in {(r.channel_id, r.ts) for r in quoting if r.channel_id != channel_id}:
                await self._change((team_id, *reply), None)
        return removed

    async def _change(self, key: MessageId, change: Change) -> None:
        """Apply a change, or keep it for the message's batch. A batch takes kept changes after
        it is stored, and the change here looks for its message after keeping it: so one of
        the two sees the other even when they run in different processes."""
        if key[0] in self._halted:
            return
        await self._stored(key)
        applied = await self._apply(key, change)
        if self._summaries is not None:
            await self._summaries.message_changed(*key)
        await self._follow(key, change)
        if applied:
            await self._supersede(key)
            return
        await self._early.keep(key, change)
        if await self._archive.get(*key) is not None:
            for taken in (await self._take([key])).values():
                await self._apply(key, taken)

    async def _supersede(self, key: MessageId) -> None:
        """A change applied to a stored message: an older one still kept for it must not
        follow it (best effort when `early` is away: this process forgets to look again)."""
        self._unchecked.pop(key, None)
        with contextlib.suppress(EarlyChangesUnknown):
            await self._early.take([key])

    async def _take(self, keys: Sequence[MessageId]) -> dict[MessageId, Change]:
        """The early changes of `keys`; none when `early` is away, and the keys are looked up
        again later (`_recheck`)."""
        try:
            return await self._early.take(keys)
        except EarlyChangesUnknown:
            self._look_again(keys)
            return {}

    def _look_again(self, keys: Sequence[MessageId]) -> None:
        for key in keys:
            self._unchecked[key] = None
        while len(self._unchecked) > MAX_UNCHECKED:
            self._unchecked.popitem(last=False)
            log.error("too many messages to look up early edits for again; gave up on one")
        if self._rechecker is None or self._rechecker.done():
            self._rechecker = asyncio.create_task(self._recheck(), name="ingest-recheck")

    async def _recheck(self) -> None:
        """Look again for the early changes of stored messages until `early` answers."""
        delay = self._recheck_delay
        while self._unchecked:
            await asyncio.sleep(delay)
            if not await self._recheck_once():
                delay = min(delay * 2, MAX_RECHECK_DELAY)

    async def _recheck_once(self) -> bool:
        """One look for the unchecked messages' changes, applying those found; False when
        `early` is still away."""
        keys = list(self._unchecked)
        try:
            found = await self._early.take(keys)
        except EarlyChangesUnknown:
            return False
        for key in keys:
            if key not in self._unchecked:
                continue  # a later change was applied meanwhile
            if key in found:
                try:
                    await self._apply_found(key, found[key])
                except Exception:
                    log.exception("could not apply an early edit found again")
            self._unchecked.pop(key, None)
        return True

    async def _apply_found(self, key: MessageId, change: Change) -> None:
        await self._apply(key, change)
        if self._summaries is not None:
            await self._summaries.message_changed(*key)
        await self._follow(key, change)

    async def close(self) -> None:
        """At shutdown: one last look for the unchecked messages' changes (those still unknown
        stay in `early` until it expires them)."""
        if self._rechecker is not None:
            self._rechecker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rechecker
        if self._unchecked and not await self._recheck_once():
            log.warning(
                "stopping with %d messages whose early edits could not be looked up",
                len(self._unchecked),
            )

    async def _apply(self, key: MessageId, change: Change) -> bool:
        """Edit or delete an archived message; False if it is not archived."""
        if change is None:
            return await self._archive.delete(*key)
        return await self._archive.update_text(*key, change)

    async def _follow(self, key: MessageId, change: Change) -> None:
        """After a message's deletion or edit: delete Lore's replies that quoted what is gone
        (each through `_change`, so one not stored yet is deleted as its batch is stored)."""
        if self._replies is None:
            return
        team_id, channel_id, ts = key
        quoting = await self._replies.quoting(team_id, channel_id, ts)
        if change is None:
            await self._replies.forget_message(team_id, channel_id, ts)
        for reply in quoting:
            if change is None or not still_quoted(reply.quoted, change):
                await self._change((team_id, reply.channel_id, reply.ts), None)

    def _forget_storing(self, key: MessageId, done: asyncio.Future[None]) -> None:
        if self._storing.get(key) is done:
            del self._storing[key]

    async def _stored(self, key: MessageId) -> None:
        """Wait while the message `key` is being stored (its failure is reported by `add`)."""
        storing = self._storing.get(key)
        if storing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(storing)

    async def _store(self, messages: list[ArchivedMessage]) -> dict[MessageId, Change]:
        """Archive a batch with the changes that overtook its messages applied; those changes,
        whose replies to follow (`_follow`) once the batch is settled."""
        messages = [m for m in messages if m.team_id not in self._halted]
        if not messages:
            return {}
        keys = [(m.team_id, m.channel_id, m.ts) for m in messages]
        early = await self._take(keys)
        kept = [
            m if key not in early else replace(m, text=early[key] or "")
            for m, key in zip(messages, keys, strict=True)
            if key not in early or early[key] is not None  # else deleted before it was stored
        ]
        await self._archive.add(kept)
        late = await self._take(keys)
        for key, change in late.items():
            await self._apply(key, change)
        return {**early, **late}

    async def _flush(self) -> None:
        await asyncio.sleep(self._linger)
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            changes: dict[MessageId, Change] = {}
            try:
                changes = await self._store([message for message, _ in batch])
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
            if changes:  # in a task of its own: a quoting reply may wait in a later batch
                task = asyncio.create_task(self._follow_all(changes), name="ingest-follow")
                self._following.add(task)
                task.add_done_callback(self._following.discard)

    async def _follow_all(self, changes: dict[MessageId, Change]) -> None:
        for key, change in changes.items():
            try:
                await self._follow(key, change)
            except Exception:
                log.exception("could not remove the replies quoting a changed message")


_SPACE = re.compile(r"\s+")


def still_quoted(quoted: str, text: str) -> bool:
    """Whether an edited message still holds the text a reply quoted (spacing aside).
    Unknown quoted text ("") counts as gone: any edit may have changed it."""
    wanted = _SPACE.sub(" ", quoted.removesuffix("…")).strip()
    return bool(wanted) and wanted in _SPACE.sub(" ", text).strip()
