"""Backfill of one channel: history pages newest first, each page's threads, position saved
after every page so that a restart neither misses nor repeats a message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.backfill.pace import Pace
from app.backfill.reader import ChannelReader, Page, Raw
from app.importer.convert import message_text, skip_reason
from memory.archive import Archive, ArchivedMessage
from memory.backfill_state import BackfillState, Position

log = logging.getLogger("lore.backfill")

LOG_EVERY = 30.0  # seconds between progress lines of one channel

Progress = Callable[[str, int], None]  # (channel_id, messages archived by one page)


class Superseded(Exception):
    """The channel's backfill was restarted or forgotten (uninstall) while it was being read,
    perhaps by another process: this run must write nothing more."""


@dataclass
class Paces:
    """One workspace's pace per method."""

    history: Pace
    replies: Pace


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def has_replies(raw: Raw) -> bool:
    """Whether a history message is the parent of a thread with replies."""
    return raw.get("thread_ts") == raw.get("ts") and bool(
        raw.get("reply_count") or raw.get("latest_reply")
    )


class ChannelJob:
    """Reads one channel into the archive; `run` returns True when the channel is done."""

    def __init__(
        self,
        archive: Archive,
        state: BackfillState,
        reader: ChannelReader,
        paces: Paces,
        page_size: int,
        stop: asyncio.Event,
        progress: Progress | None = None,
        is_excluded: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self._archive = archive
        self._is_excluded = is_excluded
        self._state = state
        self._reader = reader
        self._paces = paces
        self._page_size = page_size
        self._stop = stop
        self._progress = progress
        self._team = reader.team_id

    async def run(self, channel_id: str) -> bool:
        """Read the channel from its saved position; False if stopped before the end.

        Raises Superseded if the channel's row was reset or deleted meanwhile."""
        position = await self._state.start(self._team, channel_id, f"{time.time():.6f}")
        log.info(
            "backfill of %s/%s %s",
            self._team,
            channel_id,
            "resumed" if position.cursor or position.thread_ts else "started",
        )
        channel = _Channel(channel_id, await self._reader.channel_type(channel_id))
        latest = position.latest or f"{time.time():.6f}"
        cursor, thread = position.cursor, position.thread_ts
        replies_cursor = position.replies_cursor
        while await self._paces.history.wait(self._stop):
            page = await self._reader.history(
                channel_id, latest=latest, cursor=cursor, limit=self._page_size
            )
            await self._still_this_run(channel_id, latest)
            end = Position(latest, page.next_cursor) if page.next_cursor else None
            threads = [m["ts"] for m in page.messages if has_replies(m)]
            if thread is None:
                archived = await self._store(channel, page.messages)
                here = Position(latest, cursor, threads[0]) if threads else end
                await self._save(channel, here, archived)
            else:
                threads = [ts for ts in threads if _ts_key(ts) <= _ts_key(thread)]
                if not threads:
                    await self._save(channel, end, 0)
            for i, parent in enumerate(threads):
                after = Position(latest, cursor, threads[i + 1]) if i + 1 < len(threads) else end
                start = replies_cursor if parent == thread else None
                if not await self._thread(channel, parent, latest, cursor, start, after):
                    return False
            if end is None:
                log.info("backfill of %s/%s done", self._team, channel_id)
                return True
            cursor, thread, replies_cursor = page.next_cursor, None, None
        return False

    async def _thread(
        self,
        channel: _Channel,
        parent: str,
        latest: str,
        cursor: str | None,
        replies_cursor: str | None,
        after: Position | None,
    ) -> bool:
        """Read one thread's replies from replies_cursor; False if stopped first."""
        while await self._paces.replies.wait(self._stop):
            page: Page = await self._reader.replies(
                channel.id, parent, latest=latest, cursor=replies_cursor, limit=self._page_size
            )
            await self._still_this_run(channel.id, latest)
            replies = [
                m
                for m in page.messages
                if m.get("ts") != parent and m.get("subtype") != "thread_broadcast"
            ]
            archived = await self._store(channel, replies)
            if page.next_cursor:
                here: Position | None = Position(latest, cursor, parent, page.next_cursor)
            else:
                here = after
            await self._save(channel, here, archived)
            if not page.next_cursor:
                return True
            replies_cursor = page.next_cursor
        return False

    async def _still_this_run(self, channel_id: str, latest: str) -> None:
        """Raise Superseded unless the channel's row is still the one this run started from
        (a restart clears `latest`; an uninstall deletes the row)."""
        found = await self._state.get(self._team, channel_id)
        if found is None:
            raise Superseded("its workspace was forgotten")
        if found.position.latest != latest:
            raise Superseded("it was restarted")

    async def _store(self, channel: _Channel, messages: list[Raw]) -> int:
        """Archive the messages worth keeping (as the importer keeps them); how many."""
        kept = [
            await self._archived(channel, raw)
            for raw in messages
            if isinstance(raw.get("ts"), str) and skip_reason(raw) is None
        ]
        if self._is_excluded is not None and await self._is_excluded(self._team, channel.id):
            return 0  # an admin excluded the channel while it was being read
        if kept:
            await self._archive.add(kept)
        return len(kept)

    async def _archived(self, channel: _Channel, raw: Raw) -> ArchivedMessage:
        ts = raw["ts"]
        user = raw.get("user") if isinstance(raw.get("user"), str) else None
        bot_id = raw.get("bot_id") if isinstance(raw.get("bot_id"), str) else None
        thread_ts = raw.get("thread_ts") if isinstance(raw.get("thread_ts"), str) else None
        if thread_ts == ts and not has_replies(raw):
            thread_ts = None
        return ArchivedMessage(
            team_id=self._team,
            channel_id=channel.id,
            channel_type=channel.kind,
            ts=ts,
            text=message_text(raw),
            user_id=user or bot_id,
            thread_ts=thread_ts,
            permalink=await self._reader.permalink(channel.id, ts, thread_ts),
            is_bot=bot_id is not None or raw.get("subtype") == "bot_message",
            user_name=await self._reader.author(raw),
        )

    async def _save(self, channel: _Channel, position: Position | None, archived: int) -> None:
        await self._state.advance(self._team, channel.id, position, archived)
        channel.pages += 1
        channel.messages += archived
        if self._progress is not None:
            self._progress(channel.id, archived)
        now = time.monotonic()
        if now - channel.logged >= LOG_EVERY:
            channel.logged = now
            log.info(
                "backfill of %s/%s: %d pages, %d messages archived so far in this run",
                self._team,
                channel.id,
                channel.pages,
                channel.messages,
            )


class _Channel:
    """The channel being read and this run's counts."""

    def __init__(self, channel_id: str, kind: str) -> None:
        self.id = channel_id
        self.kind = kind
        self.pages = 0
        self.messages = 0
        self.logged = time.monotonic()
