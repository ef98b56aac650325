"""The message archive: every message the bot sees, embedded, one Chroma collection per workspace.

Collections are named from the team id and the embedder's name, so workspaces never share a
collection and neither do different vector spaces. Every search also filters on the team.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from chromadb.errors import NotFoundError

from memory.chroma_client import (
    ChromaCollection,
    ChromaStore,
    Metadata,
    Record,
    Where,
    open_embedded,
    open_http,
)
from memory.embeddings import Embedder

T = TypeVar("T")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ArchivedMessage:
    """One Slack message as archived."""

    team_id: str
    channel_id: str
    channel_type: str  # "channel" | "group" | "im" | "mpim"
    ts: str  # Slack ts, e.g. "1700000000.000100"; unique within a channel
    text: str
    user_id: str | None = None
    thread_ts: str | None = None  # None for a top-level message that has no replies
    permalink: str | None = None
    is_bot: bool = False

    @property
    def key(self) -> str:
        """The record id: unique within a workspace."""
        return message_key(self.channel_id, self.ts)


@dataclass(frozen=True)
class SearchFilters:
    """Restrictions on a search; all given ones must hold."""

    channels: frozenset[str] | None = None  # None = all; an empty set matches nothing
    user_id: str | None = None
    after: float | None = None  # unix seconds, inclusive, against the message ts
    before: float | None = None  # unix seconds, exclusive


@dataclass(frozen=True)
class SearchHit:
    """A search result; score is 1 - cosine distance (higher is better)."""

    message: ArchivedMessage
    score: float


def message_key(channel_id: str, ts: str) -> str:
    """The record id of a message."""
    return f"{channel_id}:{ts}"


def collection_name(team_id: str, embedder_name: str) -> str:
    """A valid Chroma collection name unique to (team, vector space)."""
    digest = hashlib.blake2b(f"{team_id}\x00{embedder_name}".encode(), digest_size=6).hexdigest()
    team = _UNSAFE.sub("-", team_id)[:64]
    space = _UNSAFE.sub("-", embedder_name)[:64]
    return f"lore-{team}-{space}-{digest}"


def clean_text(text: str) -> str:
    """text made UTF-8 encodable: surrogate pairs joined, lone surrogates become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def to_metadata(message: ArchivedMessage) -> Metadata:
    """Chroma metadata of a message (None becomes "": Chroma cannot store None)."""
    return {
        "team": message.team_id,
        "channel": message.channel_id,
        "channel_type": message.channel_type,
        "ts": message.ts,
        "ts_num": float(message.ts),
        "thread_ts": message.thread_ts or "",
        "user": message.user_id or "",
        "permalink": message.permalink or "",
        "is_bot": message.is_bot,
    }


def from_record(record: Record) -> ArchivedMessage:
    """The message stored in a Chroma record."""
    md = record.metadata
    return ArchivedMessage(
        team_id=str(md["team"]),
        channel_id=str(md["channel"]),
        channel_type=str(md["channel_type"]),
        ts=str(md["ts"]),
        text=record.document,
        user_id=str(md.get("user") or "") or None,
        thread_ts=str(md.get("thread_ts") or "") or None,
        permalink=str(md.get("permalink") or "") or None,
        is_bot=bool(md.get("is_bot", False)),
    )


def build_where(team_id: str, filters: SearchFilters) -> Where:
    """Chroma `where` for a team and filters; `$and` only when there are several conditions."""
    conditions: list[Where] = [{"team": team_id}]
    if filters.channels is not None:
        conditions.append({"channel": {"$in": sorted(filters.channels)}})
    if filters.user_id is not None:
        conditions.append({"user": filters.user_id})
    if filters.after is not None:
        conditions.append({"ts_num": {"$gte": float(filters.after)}})
    if filters.before is not None:
        conditions.append({"ts_num": {"$lt": float(filters.before)}})
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


class Archive:
    """Stores and searches messages; one collection per workspace, writes serialised per team."""

    def __init__(self, store: ChromaStore, embedder: Embedder) -> None:
        self._store = store
        self._embedder = embedder
        self._collections: dict[str, ChromaCollection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._open_lock = asyncio.Lock()
        self._write_embedder = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lore-embed", initializer=_lower_priority
        )

    @classmethod
    async def open_embedded(cls, path: Path, embedder: Embedder) -> Archive:
        """An archive in a local persistent Chroma directory."""
        return cls(await open_embedded(Path(path)), embedder)

    @classmethod
    async def open_http(cls, url: str, embedder: Embedder) -> Archive:
        """An archive on a Chroma server, e.g. "http://127.0.0.1:8000"."""
        return cls(await open_http(url), embedder)

    def _name(self, team_id: str) -> str:
        return collection_name(team_id, self._embedder.name)

    def _lock(self, team_id: str) -> asyncio.Lock:
        return self._locks.setdefault(team_id, asyncio.Lock())

    async def _collection(self, team_id: str, *, create: bool) -> ChromaCollection | None:
        """The team's collection (cached); None if absent and not create."""
        cached = self._collections.get(team_id)
        if cached is not None:
            return cached
        async with self._open_lock:
            cached = self._collections.get(team_id)
            if cached is None:
                cached = await self._store.collection(self._name(team_id), create=create)
                if cached is not None:
                    self._collections[team_id] = cached
            return cached

    async def _writable(self, team_id: str) -> ChromaCollection:
        collection = await self._collection(team_id, create=True)
        if collection is None:  # get_or_create always returns one
            raise RuntimeError(f"Chroma did not create the collection of {team_id}")
        return collection

    async def _read(
        self, team_id: str, op: Callable[[ChromaCollection], Awaitable[T]], default: T
    ) -> T:
        """Run op on the team's collection; default when it does not exist (or vanished)."""
        collection = await self._collection(team_id, create=False)
        if collection is None:
            return default
        try:
            return await op(collection)
        except NotFoundError:
            self._collections.pop(team_id, None)
            return default

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        """Embed texts being written, on a low-priority thread that yields to requests."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_embedder, self._embedder.embed, texts)

    async def _embed_query(self, text: str) -> list[float]:
        return (await asyncio.to_thread(self._embedder.embed, [text]))[0]

    async def _upsert(
        self, team_id: str, messages: list[ArchivedMessage], vectors: list[list[float]]
    ) -> None:
        """Upsert under the team lock held by the caller, in chunks Chroma accepts."""
        step = max(1, self._store.max_batch_size)
        for start in range(0, len(messages), step):
            chunk = messages[start : start + step]
            args = (
                [m.key for m in chunk],
                vectors[start : start + step],
                [m.text for m in chunk],
                [to_metadata(m) for m in chunk],
            )
            try:
                await (await self._writable(team_id)).upsert(*args)
            except NotFoundError:  # dropped elsewhere since cached: reopen once
                self._collections.pop(team_id, None)
                await (await self._writable(team_id)).upsert(*args)

    async def add(self, messages: Sequence[ArchivedMessage]) -> None:
        """Insert or replace messages (by team and key), embedding them in one batch."""
        latest = {(m.team_id, m.key): replace(m, text=clean_text(m.text)) for m in messages}
        unique = list(latest.values())
        if not unique:
            return
        vectors = await self._embed([m.text for m in unique])
        by_team: dict[str, list[int]] = {}
        for i, m in enumerate(unique):
            by_team.setdefault(m.team_id, []).append(i)
        for team_id, rows in by_team.items():
            async with self._lock(team_id):
                await self._upsert(team_id, [unique[i] for i in rows], [vectors[i] for i in rows])

    async def get(self, team_id: str, channel_id: str, ts: str) -> ArchivedMessage | None:
        """The archived message, or None."""
        records: list[Record] = await self._read(
            team_id, lambda c: c.get([message_key(channel_id, ts)]), []
        )
        return from_record(records[0]) if records else None

    async def update_text(self, team_id: str, channel_id: str, ts: str, text: str) -> bool:
        """Replace a message's text and re-embed it; False if the message is unknown."""
        async with self._lock(team_id):
            old = await self.get(team_id, channel_id, ts)
            if old is None:
                return False
            new = replace(old, text=clean_text(text))
            await self._upsert(team_id, [new], await self._embed([new.text]))
            return True

    async def delete(self, team_id: str, channel_id: str, ts: str) -> bool:
        """Delete a message; False if it was not archived."""
        async with self._lock(team_id):
            if await self.get(team_id, channel_id, ts) is None:
                return False
            key = message_key(channel_id, ts)
            return await self._read(team_id, lambda c: _delete(c, key), False)

    async def search(
        self,
        team_id: str,
        query: str,
        filters: SearchFilters = SearchFilters(),
        limit: int = 10,
    ) -> list[SearchHit]:
        """Dense search within one workspace, filters applied inside Chroma; best first."""
        if limit <= 0 or (filters.channels is not None and not filters.channels):
            return []
        if await self._collection(team_id, create=False) is None:
            return []
        vector = await self._embed_query(clean_text(query))
        where = build_where(team_id, filters)
        records: list[Record] = await self._read(
            team_id, lambda c: c.query(vector, limit, where), []
        )
        return [SearchHit(from_record(r), 1.0 - float(r.distance or 0.0)) for r in records]

    async def count(self, team_id: str) -> int:
        """Number of archived messages of a workspace."""
        return await self._read(team_id, lambda c: c.count(), 0)

    async def delete_team(self, team_id: str) -> None:
        """Drop a workspace's whole archive."""
        async with self._lock(team_id):
            async with self._open_lock:
                self._collections.pop(team_id, None)
                await self._store.drop(self._name(team_id))

    async def close(self) -> None:
        """Release the Chroma client and the embedding thread."""
        self._collections.clear()
        await self._store.close()
        await asyncio.to_thread(self._write_embedder.shutdown, wait=True)


def _lower_priority() -> None:
    """Background embedding runs only when request handling leaves a core idle.

    Linux: SCHED_IDLE for this thread; elsewhere, or if refused, a higher nice value.
    """
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, thread, 10)


async def _delete(collection: ChromaCollection, key: str) -> bool:
    await collection.delete([key])
    return True
