"""Archiving of incoming messages in small batches, so embedding runs once per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from app.team_halts import TeamHalts
from memory.archive import Archive, ArchivedMessage
from memory.early_changes import (
    Change,
    EarlyChanges,
    EarlyChangesUnknown,
    LocalEarlyChanges,
    MessageId,
)
from memory.notes import Notes
from memory.reply_sources import Quote, ReplySources
from memory.summaries import ThreadSummaries

log = logging.getLogger("lore.ingest")

ReopenThread = Callable[[str, str, str], Awaitable[None]]
"""Called with (team_id, channel_id, thread_ts) when a note's source in that thread is edited."""

BATCH = 64
MAX_UNCHECKED = 10_000
MAX_RECHECK_DELAY = 10.0


class Ingest:
    """Collects messages into batches for the archive; `add` returns once its batch is stored.

    A batch waits `linger` seconds for company: fewer, larger batches cost the event loop less.
    At most `max_pending` messages wait or are being stored; a further `add` waits for room
    (backpressure on the background task that archives), so nothing is dropped.

    An edit or deletion may overtake its message (Slack sends them seconds apart; the message
    waits for its batch, for its author's name, or in another process), and a message's changes
    may arrive in any order. Every change is first kept in `early` (Redis when several processes
    share the archive, else the SQL store: it outlives the process either way), which keeps the
    newest by Slack's order; what is applied is always that newest change, and each batch
    consults `early` before and after it is stored. When `early` cannot be looked at (its store
    away), the batch is stored as it came and its messages are looked
    up again, with backoff, until `early` answers (`rechecking` counts them; at most
    `MAX_UNCHECKED`); what is found then is the newest change, applied as any other.

    Text taken back leaves Lore's copies too: when a message is deleted, Lore's archived replies
    that quoted it (`replies`) are deleted the same way; when it is edited, those whose quoted
    text it no longer holds are. A thread summary that condensed it (`summaries`) is dropped. A
    note (`notes`) whose every source message is deleted is retracted; when a note's source is
    edited, its thread is handed to `reopen_thread`, so what was learned from it may be read
    again.
    """

    def __init__(
        self,
        archive: Archive,
        linger: float = 0.05,
        max_pending: int = 1000,
        early: EarlyChanges | None = None,
        replies: ReplySources | None = None,
        summaries: ThreadSummaries | None = None,
        notes: Notes | None = None,
        reopen_thread: ReopenThread | None = None,
        recheck_delay: float = 0.5,
    ) -> None:
        self._archive = archive
        self._replies = replies
        self._summaries = summaries
        self._notes = notes
        self.reopen_thread = reopen_thread
        self._early: EarlyChanges = early if early is not None else LocalEarlyChanges()
        self._linger = linger
        self._room = asyncio.Semaphore(max_pending)
        self._pending = 0
        self._held_back = 0
        self._waiting: list[tuple[ArchivedMessage, int, asyncio.Future[None]]] = []  # stamped
        self._flusher: asyncio.Task[None] | None = None
        self._storing: dict[MessageId, asyncio.Future[None]] = {}
        self._following: set[asyncio.Task[None]] = set()
        self._halts = TeamHalts()
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
        process, and everything of it that arrives until `resume_team` (it is being forgotten);
        return once a batch of its messages being stored now is stored."""
        self._early.forget_team(team_id)
        await self._halts.halt(team_id)

    def resume_team(self, team_id: str) -> None:
        self._halts.resume(team_id)

    async def add(self, message: ArchivedMessage) -> None:
        if self._halts.halted(message.team_id):
            return
        stamp = self._halts.stamp(message.team_id)
        key = (message.team_id, message.channel_id, message.ts)
        self._held_back += 1
        try:
            await self._room.acquire()
        finally:
            self._held_back -= 1
        self._pending += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, stamp, done))
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

    async def lore_replied(self, team_id: str, channel_id: str, thread_ts: str, after: str) -> bool:
        """Whether one of Lore's replies newer than `after` is archived in the thread."""
        thread = await self._archive.thread(team_id, channel_id, thread_ts)
        return any(m.from_lore and float(m.ts) > float(after) for m in thread)

    async def update_text(
        self, team_id: str, channel_id: str, ts: str, text: str, version: str = ""
    ) -> None:
        """An edit; `version`: its event's `event_ts` (a newer edit already kept wins)."""
        await self._change((team_id, channel_id, ts), text, version)

    async def delete(self, team_id: str, channel_id: str, ts: str, version: str = "") -> None:
        await self._change((team_id, channel_id, ts), None, version)

    async def set_channel_type(self, team_id: str, channel_id: str, channel_type: str) -> int:
        """A channel made private or public: its archived messages and its notes take the new
        kind now."""
        if self._notes is not None:
            await self._notes.set_channel_type(team_id, channel_id, channel_type)
        return await self._archive.set_channel_type(team_id, channel_id, channel_type)

    async def remove_channel(self, team_id: str, channel_id: str) -> int:
        """A channel deleted in Slack: its messages go, and Lore's replies elsewhere that
        quoted them. How many of the channel's messages there were."""
        removed = await self._archive.remove_channel(team_id, channel_id)
        if self._summaries is not None:
            await self._summaries.delete_channel(team_id, channel_id)
        if self._notes is not None:
            gone = await self._notes.channel_deleted(team_id, channel_id, by="deletion")
            if gone:
                log.info("retracted %d notes of deleted channel %s", len(gone), channel_id)
        if self._replies is not None:
            quoting = await self._replies.quoting_channel(team_id, channel_id)
            await self._replies.forget_channel(team_id, channel_id)
            for reply in {(r.channel_id, r.ts) for r in quoting if r.channel_id != channel_id}:
                await self._change((team_id, *reply), None)
        return removed

    async def _change(self, key: MessageId, change: Change, version: str = "") -> None:
        """Keep a change, then apply the newest one kept for its message. A batch looks at the
        kept changes after it is stored, and the change here looks for its message after it is
        kept: so one of the two sees the other even when they run in different processes."""
        if self._halts.halted(key[0]):
            return
        newest = await self._early.keep(key, change, version)
        await self._stored(key)
        newest = await self._settle(key, newest)
        if self._summaries is not None:
            await self._summaries.message_changed(*key)
        await self._follow(key, newest)

    async def _settle(self, key: MessageId, change: Change) -> Change:
        """Apply `change`, then again the newest kept change while a newer one was kept
        meanwhile: whichever process writes last, it writes the newest (or a newer change's
        process applies it after). Nothing to do while the message is not archived. The
        change applied last."""
        while await self._apply(key, change):
            newest = (await self._early.newest([key])).get(key, change)
            if newest == change:
                break
            change = newest
        return change

    async def _newest_or_later(self, keys: Sequence[MessageId]) -> dict[MessageId, Change]:
        """The newest kept changes of `keys`; none when `early` is away, and the keys are
        looked up again later (`_recheck`)."""
        try:
            return await self._early.newest(keys)
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
            found = await self._early.newest(keys)
        except EarlyChangesUnknown:
            return False
        for key in keys:
            if key in found:
                try:
                    await self._apply_found(key, found[key])
                except Exception:
                    log.exception("could not apply an early edit found again")
            self._unchecked.pop(key, None)
        return True

    async def _apply_found(self, key: MessageId, change: Change) -> None:
        change = await self._settle(key, change)
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
        (each through `_change`, so one not stored yet is deleted as its batch is stored), and
        take back the notes learned from it."""
        await self._follow_notes(key, change)
        if self._replies is None:
            return
        team_id, channel_id, ts = key
        quoting = await self._replies.quoting(team_id, channel_id, ts)
        if change is None:
            await self._replies.forget_message(team_id, channel_id, ts)
        for reply in quoting:
            if change is None or not still_quoted(reply.quoted, change):
                await self._change((team_id, reply.channel_id, reply.ts), None)

    async def _follow_notes(self, key: MessageId, change: Change) -> None:
        """A deleted source may leave a note without any: it is retracted. An edited one sends
        its thread back to be read again."""
        if self._notes is None:
            return
        team_id, channel_id, ts = key
        if change is None:
            for note in await self._notes.source_deleted(team_id, channel_id, ts):
                log.info("retracted note %s: every source message was deleted", note.id)
            return
        if self.reopen_thread is None or not await self._notes.citing(team_id, channel_id, ts):
            return
        message = await self._archive.get(team_id, channel_id, ts)
        await self.reopen_thread(team_id, channel_id, message.thread_key if message else ts)

    def _forget_storing(self, key: MessageId, done: asyncio.Future[None]) -> None:
        if self._storing.get(key) is done:
            del self._storing[key]

    async def _stored(self, key: MessageId) -> None:
        """Wait while the message `key` is being stored (its failure is reported by `add`)."""
        storing = self._storing.get(key)
        if storing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(storing)

    async def _store(self, batch: list[tuple[ArchivedMessage, int]]) -> dict[MessageId, Change]:
        """Archive a batch with the changes that overtook its messages applied; those changes,
        whose replies to follow (`_follow`) once the batch is settled. A message whose
        workspace was halted since it was taken is let go (its data was forgotten since)."""
        messages = [m for m, stamp in batch if not self._halts.stale(m.team_id, stamp)]
        if not messages:
            return {}
        with contextlib.ExitStack() as running:
            for team_id in {m.team_id for m in messages}:
                running.enter_context(self._halts.running(team_id))
            return await self._store_unhalted(messages)

    async def _store_unhalted(self, messages: list[ArchivedMessage]) -> dict[MessageId, Change]:
        keys = [(m.team_id, m.channel_id, m.ts) for m in messages]
        early = await self._newest_or_later(keys)
        kept = [
            m if key not in early else replace(m, text=early[key] or "")
            for m, key in zip(messages, keys, strict=True)
            if key not in early or early[key] is not None  # else deleted before it was stored
        ]
        await self._archive.add(kept)
        late = await self._newest_or_later(keys)
        for key, change in late.items():
            if key not in early or early[key] != change:
                await self._settle(key, change)
        return {**early, **late}

    async def _flush(self) -> None:
        await asyncio.sleep(self._linger)
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            changes: dict[MessageId, Change] = {}
            try:
                changes = await self._store([(message, stamp) for message, stamp, _ in batch])
            except Exception as error:
                log.exception("archiving %d messages failed", len(batch))
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, _, done in batch:
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
