"""The message archive: every message the bot sees, searchable by meaning and by words.

Two indexes, kept in step by every write:
- dense: one Chroma collection per workspace (named from the team id and the embedder's name, so
  workspaces never share a collection and neither do vector spaces), one vector per message text;
- lexical: the SQL store's full-text index (`memory.lexical`), whose rows are also the record
  the archive reads messages from.

`search` fuses the two rankings by weighted reciprocal rank fusion (`memory.ranking`), with the
audience's privacy rule and the filters applied inside both retrievals, and re-reads every hit
from the record.
Writes go to Chroma first and to the record last; deletions to the record first. So a message
half-written or half-deleted after a failure is never shown: a dense hit with no record is
dropped, and the text shown is always the record's.

Chroma's own metadata filter (`where`) costs 45-350 ms per query at 100,000 messages whatever
it matches (bench/search_latency.py), against 2-11 ms for an unfiltered query of 64-1,024
results. So the dense retrieval restricts to the audience and filters in one of three ways,
chosen from per-channel message counts: the nearest `limit / share` vectors unfiltered, kept
if they pass (broad scopes, e.g. an answer's audience); the nearest among the ids the SQL
record lists for the scope (narrow ones, e.g. one channel); or `where` (fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import httpx
from chromadb.errors import ChromaError, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.audience import PUBLIC, Audience, audience_check_needed, sees_nothing
from memory.channel_kinds import DELETED, ChannelKinds
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
from memory.lexical import CONTEXT_PART_CHARS, LexicalIndex, ThreadId, ThreadRow
from memory.lexical import thread_contexts as _thread_contexts
from memory.messages import (
    ArchivedMessage,
    SearchFilters,
    SearchHit,
    clean_text,
    indexed_text,
    message_key,
)
from memory.note_search import NoteSearch
from memory.notes import Note
from memory.query_dates import dated_filters
from memory.query_embeddings import QueryEmbeddings
from memory.ranking import Key, Ranking

__all__ = [
    "Archive",
    "ArchivedMessage",
    "Audience",
    "SearchFilters",
    "SearchHit",
    "build_where",
    "clean_text",
    "collection_name",
    "message_key",
]

T = TypeVar("T")
QueryVector = Callable[[], Awaitable[list[float]]]
"""The query's embedding, made when first needed and shared by the search's scopes."""

log = logging.getLogger("lore.archive")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")

NO_FILTERS = SearchFilters()
DEFAULT_RANKING = Ranking()
# Dense retrieval: the unfiltered query asks for limit * OVERSAMPLE / share results, when that is
# at most MAX_OVERSAMPLE; else it is restricted to the scope's ids, when at most MAX_IDS.
OVERSAMPLE = 1.5
MAX_OVERSAMPLE = 1024
MAX_IDS = 20_000
STATS_TTL = 600.0  # seconds before channel counts are re-read (other processes write too)
FETCH_SLACK = 8  # records read beyond `limit` at once, for hits that fail validation
ABOVE = 1e-6  # how much more than the best of its source messages a note scores
EMBED_NICENESS = 10  # background embedding: about a tenth of a core against a busy one
UNREACHABLE = (httpx.TransportError, BrokenProcessPool)
"""What a call to the vector store raises when it cannot be reached (server, worker process)."""


def collection_name(team_id: str, embedder_name: str) -> str:
    """A valid Chroma collection name unique to (team, vector space)."""
    digest = hashlib.blake2b(f"{team_id}\x00{embedder_name}".encode(), digest_size=6).hexdigest()
    team = _UNSAFE.sub("-", team_id)[:64]
    space = _UNSAFE.sub("-", embedder_name)[:64]
    return f"lore-{team}-{space}-{digest}"


def to_metadata(message: ArchivedMessage) -> Metadata:
    """Chroma metadata of a message: only what `build_where` filters on (None becomes "":
    Chroma cannot store None). Every hit is read back from the SQL record, so Chroma keeps
    nothing else: each key is a row Chroma writes and indexes per message."""
    return {
        "channel": message.channel_id,
        "channel_type": message.channel_type,
        "ts_num": float(message.ts),
        "user": message.user_id or "",
    }


def build_where(filters: SearchFilters, audience: Audience) -> Where | None:
    """Chroma `where` for an audience and filters (None: no condition; `$and` only with several).

    No team condition: each workspace has its own collection, every hit is re-read from the
    team's record, and Chroma's filter costs in proportion to the rows it matches (a condition
    true of every record took 350 ms at 100,000 messages).
    """
    conditions: list[Where] = []
    if audience_check_needed(audience, filters.channels):
        allowed: list[Where] = [{"channel_type": PUBLIC}] if audience.public else []
        if audience.channels:
            allowed.append({"channel": {"$in": sorted(audience.channels)}})
        conditions.append(allowed[0] if len(allowed) == 1 else {"$or": allowed})
    if filters.channels is not None:
        conditions.append({"channel": {"$in": sorted(filters.channels)}})
    if filters.user_id is not None:
        conditions.append({"user": filters.user_id})
    if filters.after is not None:
        conditions.append({"ts_num": {"$gte": float(filters.after)}})
    if filters.before is not None:
        conditions.append({"ts_num": {"$lt": float(filters.before)}})
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def passes(message: ArchivedMessage, audience: Audience, filters: SearchFilters) -> bool:
    """Whether a message may be a result of a search with this audience and filters."""
    ts = float(message.ts)
    return (
        audience.allows(message.channel_id, message.channel_type)
        and (filters.channels is None or message.channel_id in filters.channels)
        and (filters.user_id is None or message.user_id == filters.user_id)
        and (filters.after is None or ts >= filters.after)
        and (filters.before is None or ts < filters.before)
    )


def parse_key(record_id: str) -> Key:
    """The (channel_id, ts) of a Chroma record id (`message_key`; a ts has no colon)."""
    channel_id, _, ts = record_id.rpartition(":")
    return channel_id, ts


@dataclass
class ChannelStats:
    """A workspace's channels: type and number of messages. An estimate (it may lag writes
    made by other processes): it steers how the dense retrieval filters, never what is shown."""

    types: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    first: float = math.inf
    last: float = -math.inf
    loaded_at: float = field(default_factory=time.monotonic)

    def share(self, audience: Audience, filters: SearchFilters) -> float:
        """Estimated share of the workspace's messages within audience and channel/date filters."""
        total = sum(self.counts.values())
        if total == 0:
            return 0.0
        inside = sum(
            count
            for channel, count in self.counts.items()
            if (filters.channels is None or channel in filters.channels)
            and audience.allows(channel, self.types[channel])
        )
        share = inside / total
        if filters.after is not None or filters.before is not None:
            low = max(self.first, filters.after if filters.after is not None else -math.inf)
            high = min(self.last, filters.before if filters.before is not None else math.inf)
            span = self.last - self.first
            share *= 0.0 if high < low else 1.0 if span <= 0 else (high - low) / span
        return share

    def may_pass(self, key: Key, audience: Audience, filters: SearchFilters) -> bool:
        """False if the message is known to be outside audience or channel/date filters
        (a channel not seen yet passes: the record decides)."""
        channel, ts = key
        if filters.channels is not None and channel not in filters.channels:
            return False
        when = float(ts)
        if (filters.after is not None and when < filters.after) or (
            filters.before is not None and when >= filters.before
        ):
            return False
        kind = self.types.get(channel)
        return kind is None or audience.allows(channel, kind)

    def add(self, messages: Sequence[ArchivedMessage]) -> None:
        for m in messages:
            self.types[m.channel_id] = m.channel_type
            self.counts[m.channel_id] = self.counts.get(m.channel_id, 0) + 1
            self.first = min(self.first, float(m.ts))
            self.last = max(self.last, float(m.ts))

    def remove(self, message: ArchivedMessage) -> None:
        self.counts[message.channel_id] = max(0, self.counts.get(message.channel_id, 0) - 1)


class Archive:
    """Stores and searches messages; one collection per workspace, writes serialised per team."""

    def __init__(
        self,
        store: ChromaStore,
        embedder: Embedder,
        lexical: LexicalIndex,
        ranking: Ranking = DEFAULT_RANKING,
        kinds: ChannelKinds | None = None,
    ) -> None:
        self._store = store
        self._kinds = kinds
        self._ranking = ranking
        self._embedder = embedder
        self._lexical = lexical
        self._collections: dict[str, ChromaCollection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._open_lock = asyncio.Lock()
        self._stats: dict[str, ChannelStats] = {}
        self._notes: NoteSearch | None = None
        self._reloading: dict[str, asyncio.Task[ChannelStats]] = {}
        self._write_embedder = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lore-embed", initializer=_lower_priority
        )
        self._queries = QueryEmbeddings(embedder)
        self.searches_without_vectors = 0
        """Searches answered from the lexical index alone: the vector store was unreachable."""

    @classmethod
    async def open_embedded(
        cls,
        path: Path,
        embedder: Embedder,
        engine: AsyncEngine,
        ranking: Ranking = DEFAULT_RANKING,
    ) -> Archive:
        """An archive in a local persistent Chroma directory, its record and lexical index in
        engine's database (SQLite or PostgreSQL)."""
        lexical = await LexicalIndex.open(engine, context_weight=ranking.context_weight)
        kinds = await ChannelKinds.open(engine)
        return cls(await open_embedded(Path(path)), embedder, lexical, ranking, kinds)

    @classmethod
    async def open_http(
        cls,
        url: str,
        embedder: Embedder,
        engine: AsyncEngine,
        ranking: Ranking = DEFAULT_RANKING,
    ) -> Archive:
        """An archive on a Chroma server, e.g. "http://127.0.0.1:8000", its record and lexical
        index in engine's database."""
        lexical = await LexicalIndex.open(engine, context_weight=ranking.context_weight)
        kinds = await ChannelKinds.open(engine)
        return cls(await open_http(url), embedder, lexical, ranking, kinds)

    def find_notes(self, notes: NoteSearch) -> None:
        """From now on `search` finds notes too, each ranked above the messages it summarises."""
        self._notes = notes

    @property
    def space(self) -> str:
        """The vector space written and searched: the embedder's name."""
        return self._embedder.name

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
        return await self._queries.embed(text)

    async def _upsert(
        self, team_id: str, messages: list[ArchivedMessage], vectors: Sequence[list[float]]
    ) -> None:
        """Upsert vectors under the team lock held by the caller, in chunks Chroma accepts."""
        step = max(1, self._store.max_batch_size)
        for start in range(0, len(messages), step):
            chunk = messages[start : start + step]
            args = (
                [m.key for m in chunk],
                list(vectors[start : start + step]),
                [""] * len(chunk),  # no text in Chroma; a blank also clears an older copy
                [to_metadata(m) for m in chunk],
            )
            try:
                await (await self._writable(team_id)).upsert(*args)
            except NotFoundError:  # dropped elsewhere since cached: reopen once
                self._collections.pop(team_id, None)
                await (await self._writable(team_id)).upsert(*args)

    async def _plan(
        self,
        team_id: str,
        messages: Sequence[ArchivedMessage],
        removed: Sequence[ArchivedMessage] = (),
    ) -> tuple[list[tuple[ArchivedMessage, str]], list[tuple[Key, str]]]:
        """The lexical rows to write for messages (each with its thread context) and the new
        contexts of stored neighbours that messages, or the removal of `removed`, change."""
        gone = {(m.channel_id, m.ts) for m in removed}
        incoming: dict[ThreadId, dict[str, ArchivedMessage]] = {}
        for m in messages:
            incoming.setdefault((m.channel_id, m.thread_key), {})[m.ts] = m
        threads = set(incoming) | {(m.channel_id, m.thread_key) for m in removed}
        stored = await self._lexical.thread_rows(team_id, threads)
        rows: list[tuple[ArchivedMessage, str]] = []
        changed: list[tuple[Key, str]] = []
        for thread, old_rows in stored.items():
            channel_id, thread_key = thread
            batch = incoming.get(thread, {})
            merged = {r.ts: r for r in old_rows if (channel_id, r.ts) not in gone}
            for ts, m in batch.items():
                merged[ts] = ThreadRow(ts, float(ts), m.text[:CONTEXT_PART_CHARS], "")
            contexts = _thread_contexts(list(merged.values()), thread_key)
            rows.extend((m, contexts[ts]) for ts, m in batch.items())
            old_contexts = {r.ts: r.context for r in old_rows}
            changed.extend(
                ((channel_id, ts), context)
                for ts, context in contexts.items()
                if ts not in batch and old_contexts.get(ts) != context
            )
        return rows, changed

    async def _store_messages(
        self, team_id: str, messages: list[ArchivedMessage], vectors: Sequence[list[float]]
    ) -> None:
        """Write messages to both indexes, under the team lock held by the caller."""
        rows, contexts = await self._plan(team_id, messages)
        await self._upsert(team_id, messages, vectors)
        await self._lexical.write(team_id, upserts=rows, contexts=contexts)
        if (stats := self._stats.get(team_id)) is not None:
            stats.add(messages)

    async def add(
        self,
        messages: Sequence[ArchivedMessage],
        *,
        vectors: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """Insert or replace messages (by team and key), embedding them in one batch.

        `vectors`, one per message, are embeddings of the messages' `indexed_text` made with this
        archive's embedder (for bulk loads that embed elsewhere); by default add embeds.
        """
        if vectors is not None and len(vectors) != len(messages):
            raise ValueError("add needs one vector per message")
        latest: dict[tuple[str, str], int] = {}
        for i, m in enumerate(messages):
            latest[(m.team_id, m.key)] = i
        picked = list(latest.values())
        if not picked:
            return
        unique = [replace(messages[i], text=clean_text(messages[i].text)) for i in picked]
        embedded = (
            await self._embed([indexed_text(m) for m in unique])
            if vectors is None
            else [list(vectors[i]) for i in picked]
        )
        by_team: dict[str, list[int]] = {}
        for i, m in enumerate(unique):
            by_team.setdefault(m.team_id, []).append(i)
        for team_id, rows in by_team.items():
            async with self._lock(team_id):
                current, vectors_kept = await self._current_kinds(
                    team_id, [unique[i] for i in rows], [embedded[i] for i in rows]
                )
                if current:
                    await self._store_messages(team_id, current, vectors_kept)
                    await self._recheck_kinds(team_id, current)

    async def _current_kinds(
        self, team_id: str, messages: list[ArchivedMessage], vectors: list[list[float]]
    ) -> tuple[list[ArchivedMessage], list[list[float]]]:
        """The messages with their channel's recorded kind; those of deleted channels dropped."""
        if self._kinds is None:
            return messages, vectors
        recorded = await self._kinds.of(team_id, {m.channel_id for m in messages})
        if not recorded:
            return messages, vectors
        kept: list[ArchivedMessage] = []
        kept_vectors: list[list[float]] = []
        for m, vector in zip(messages, vectors, strict=True):
            if m.channel_id not in recorded:
                kept.append(m)
            elif (kind := recorded[m.channel_id]) is not DELETED:
                kept.append(replace(m, channel_type=kind))
            else:
                continue  # its channel was deleted in Slack
            kept_vectors.append(vector)
        return kept, kept_vectors

    async def channel_kinds(
        self, team_id: str, channel_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """What Slack last said of these channels, where it said anything: the kind, or None
        for a deleted channel (`add` applies it to every write)."""
        return await self._kinds.of(team_id, channel_ids) if self._kinds is not None else {}

    async def _recheck_kinds(self, team_id: str, written: list[ArchivedMessage]) -> None:
        """After a write: a kind recorded meanwhile (by another process, whose update of the
        channel's rows ran before these rows were committed) is applied to the channel now."""
        if self._kinds is None:
            return
        wrote = {m.channel_id: m.channel_type for m in written}
        for channel_id, kind in (await self._kinds.of(team_id, wrote)).items():
            if kind is DELETED:
                await self._delete_channel_rows(team_id, channel_id)
            elif kind != wrote[channel_id]:
                await self._set_rows_type(team_id, channel_id, kind)

    async def get(self, team_id: str, channel_id: str, ts: str) -> ArchivedMessage | None:
        """The archived message, or None."""
        return (await self._lexical.get_many(team_id, [(channel_id, ts)])).get((channel_id, ts))

    async def thread(self, team_id: str, channel_id: str, thread_ts: str) -> list[ArchivedMessage]:
        """A thread's archived messages, its parent included, oldest first."""
        return await self._lexical.thread(team_id, channel_id, thread_ts)

    async def update_text(self, team_id: str, channel_id: str, ts: str, text: str) -> bool:
        """Replace a message's text and re-index it; False if the message is unknown."""
        async with self._lock(team_id):
            old = await self.get(team_id, channel_id, ts)
            if old is None:
                return False
            new = replace(old, text=clean_text(text))
            if new != old:  # Slack also sends changes that leave the text (a link's unfurl)
                await self._store_messages(team_id, [new], await self._embed([indexed_text(new)]))
            return True

    async def delete(self, team_id: str, channel_id: str, ts: str) -> bool:
        """Delete a message from both indexes; False if it was not archived."""
        async with self._lock(team_id):
            old = await self.get(team_id, channel_id, ts)
            if old is not None:
                _, contexts = await self._plan(team_id, [], removed=[old])
                await self._lexical.write(team_id, contexts=contexts, deletes=[(channel_id, ts)])
                if (stats := self._stats.get(team_id)) is not None:
                    stats.remove(old)
            key = message_key(channel_id, ts)
            await self._read(team_id, lambda c: _delete(c, key), False)
            return old is not None

    async def search(
        self,
        team_id: str,
        query: str,
        *,
        audience: Audience,
        filters: SearchFilters = NO_FILTERS,
        limit: int = 10,
    ) -> list[SearchHit]:
        """Hybrid search within one workspace, best first.

        Only messages the audience may see and that pass the filters are candidates, in both
        the lexical and the dense retrieval; every hit is read back from the current record.
        A date the query names ("in March 2024", "last week") adds both retrievals within it.
        """
        if limit <= 0 or sees_nothing(audience, filters.channels):
            return []
        query = clean_text(query)
        depth = max(self._ranking.depth, 2 * limit)
        scopes = (
            [filters, *dated_filters(query, filters)] if self._ranking.date_weight else [filters]
        )
        vector = _once(lambda: self._embed_query(query))  # shared by the scopes and the notes
        notes = asyncio.ensure_future(
            self._notes.search(
                team_id, query, audience=audience, filters=filters, limit=limit, query_vector=vector
            )
            if self._notes is not None
            else _nothing()
        )
        rankings = await asyncio.gather(
            *(self._retrieve(team_id, query, vector, audience, scope, depth) for scope in scopes)
        )
        (lexical, dense), *dated = rankings
        scores = self._ranking.fuse(lexical, dense, dated)
        ranked = sorted(scores, key=lambda k: -scores[k])
        hits: list[SearchHit] = []
        start = 0
        while len(hits) < limit and start < len(ranked):
            chunk = ranked[start : start + limit - len(hits) + FETCH_SLACK]
            start += len(chunk)
            records = await self._lexical.get_many(team_id, chunk)
            for key in chunk:
                message = records.get(key)
                if message is not None and passes(message, audience, filters):
                    hits.append(SearchHit(message, scores[key]))
                # else removed since indexed, or outside audience or filters
        return await self._with_notes(team_id, hits[:limit], await notes, audience, filters, limit)

    async def _with_notes(
        self,
        team_id: str,
        hits: list[SearchHit],
        found: list[tuple[Note, float]],
        audience: Audience,
        filters: SearchFilters,
        limit: int,
    ) -> list[SearchHit]:
        """Message hits and note hits, best first: a note shows as its first source message
        still archived and scores above the best of its source messages found."""
        if not found:
            return hits
        keys = [(s.channel_id, s.ts) for note, _ in found for s in note.sources]
        records = await self._lexical.get_many(team_id, keys)
        scores = {(h.message.channel_id, h.message.ts): h.score for h in hits}
        noted: list[SearchHit] = []
        for note, score in found:
            kept = [records[k] for s in note.sources if (k := (s.channel_id, s.ts)) in records]
            first = note.sources[0]
            shown = (
                kept[0]
                if kept
                else ArchivedMessage(
                    team_id,
                    note.channel_id,
                    note.channel_type,
                    first.ts,
                    "",
                    permalink=first.permalink,
                )
            )
            if not passes(shown, audience, filters):
                continue
            best = max([score, *(scores.get((s.channel_id, s.ts), 0.0) for s in note.sources)])
            noted.append(SearchHit(shown, best * (1 + ABOVE) + ABOVE, note=note))
        return sorted([*hits, *noted], key=lambda hit: -hit.score)[:limit]

    async def _retrieve(
        self,
        team_id: str,
        query: str,
        vector: QueryVector,
        audience: Audience,
        filters: SearchFilters,
        depth: int,
    ) -> tuple[list[Key], list[Key]]:
        """The lexical and the dense ranking of one scope, best first."""
        lexical, dense = await asyncio.gather(
            self._lexical.search(team_id, query, audience=audience, filters=filters, limit=depth),
            self._if_reachable(team_id, self._dense(team_id, vector, audience, filters, depth)),
        )
        return lexical, dense

    async def _if_reachable(self, team_id: str, dense: Awaitable[list[Key]]) -> list[Key]:
        """The dense ranking; none while the vector store cannot be reached (a Chroma server
        restarting, a worker being replaced), so that search answers from the lexical index."""
        try:
            return await dense
        except UNREACHABLE as error:
            self.searches_without_vectors += 1
            log.warning("vector store unreachable (%s); searching %s lexically", error, team_id)
            return []

    async def _dense(
        self,
        team_id: str,
        query_vector: QueryVector,
        audience: Audience,
        filters: SearchFilters,
        limit: int,
    ) -> list[Key]:
        """Keys of the nearest messages within audience and filters, best first."""
        if sees_nothing(audience, filters.channels):
            return []
        if await self._collection(team_id, create=False) is None:
            return []
        if audience.everything and filters == NO_FILTERS:
            return await self._nearest(team_id, await query_vector(), limit)
        stats = await self._channel_stats(team_id)
        share = stats.share(audience, filters) if filters.user_id is None else 0.0
        wanted = math.ceil(limit * OVERSAMPLE / share) if share > 0.0 else MAX_OVERSAMPLE + 1
        if wanted <= MAX_OVERSAMPLE:  # a broad scope: filter the unfiltered nearest
            nearest = await self._nearest(team_id, await query_vector(), wanted)
            kept = [k for k in nearest if stats.may_pass(k, audience, filters)]
            if len(kept) >= limit or len(nearest) < wanted:
                return kept[:limit]
        # A narrow scope: search among its ids. When the channel filter names only channels
        # the audience may see, the ids come from the index alone, without reading each row's
        # channel type; a message whose type is not what the counts say fails `passes` later.
        known = filters.channels is not None and all(
            c in stats.types and audience.allows(c, stats.types[c]) for c in filters.channels
        )
        ids, vector = await asyncio.gather(
            self._lexical.scope_ids(
                team_id,
                audience=Audience.everyone() if known else audience,
                filters=filters,
                limit=MAX_IDS + 1,
            ),
            query_vector(),
        )
        if not ids:
            return []
        if len(ids) <= MAX_IDS:
            try:
                return await self._nearest(team_id, vector, min(limit, len(ids)), ids=ids)
            except ChromaError as error:  # e.g. a record whose vector is missing
                log.warning("dense search by ids failed (%s); filtering in Chroma", error)
        where = build_where(filters, audience)
        return await self._nearest(team_id, vector, limit, where=where)

    async def _nearest(
        self,
        team_id: str,
        vector: list[float],
        limit: int,
        *,
        where: Where | None = None,
        ids: list[str] | None = None,
    ) -> list[Key]:
        records: list[Record] = await self._read(
            team_id,
            lambda c: c.query(vector, limit, where, ids=ids, documents=False, metadatas=False),
            [],
        )
        return [parse_key(r.id) for r in records]

    async def teams(self) -> list[str]:
        """The workspaces with archived messages."""
        return await self._lexical.teams()

    async def key_page(self, team_id: str, after: Key | None, limit: int) -> list[Key]:
        """Up to limit keys of the workspace's archived messages after `after`, in key order."""
        return await self._lexical.key_page(team_id, after, limit)

    async def vector_count(self, team_id: str) -> int:
        """Vectors in the workspace's collection of this archive's vector space."""
        return await self._read(team_id, lambda c: c.count(), 0)

    async def lacking_vectors(self, team_id: str, keys: Sequence[Key]) -> list[Key]:
        """The keys among these that have no vector in this vector space's collection."""
        ids = [message_key(*key) for key in keys]
        present = await self._read(team_id, lambda c: c.existing(ids), set[str]())
        return [key for key, i in zip(keys, ids, strict=True) if i not in present]

    async def restore_vectors(self, team_id: str, keys: Sequence[Key]) -> int:
        """Embed (on the background embedding thread) and write the vectors these archived
        messages lack, with the ids and metadata `add` writes; how many were written.

        The records are read again under the team lock after embedding: one edited or deleted
        meanwhile, or whose vector a live write stored meanwhile, is left to that write."""
        records = await self._lexical.get_many(team_id, keys)
        if not records:
            return 0
        embedded = list(records.values())
        vectors = await self._embed([indexed_text(m) for m in embedded])
        async with self._lock(team_id):
            current = await self._lexical.get_many(team_id, list(records))
            lacking = set(await self.lacking_vectors(team_id, list(records)))
            kept = [
                (now, vector)
                for m, vector in zip(embedded, vectors, strict=True)
                if (key := (m.channel_id, m.ts)) in lacking
                and (now := current.get(key)) is not None
                and indexed_text(now) == indexed_text(m)
            ]
            if kept:
                await self._upsert(team_id, [m for m, _ in kept], [v for _, v in kept])
        return len(kept)

    async def _channel_stats(self, team_id: str) -> ChannelStats:
        """The team's channel counts: loaded once, then kept up by writes here and re-read in
        the background every STATS_TTL seconds."""
        stats = self._stats.get(team_id)
        if stats is None:
            stats = await self._load_stats(team_id)
        elif time.monotonic() - stats.loaded_at > STATS_TTL and team_id not in self._reloading:
            task = asyncio.create_task(self._load_stats(team_id), name="archive-stats")
            self._reloading[team_id] = task
            task.add_done_callback(lambda _: self._reloading.pop(team_id, None))
        return stats

    async def _load_stats(self, team_id: str) -> ChannelStats:
        stats = ChannelStats()
        for channel, kind, count, first, last in await self._lexical.channel_stats(team_id):
            stats.types[channel] = kind
            stats.counts[channel] = stats.counts.get(channel, 0) + count
            stats.first = min(stats.first, first)
            stats.last = max(stats.last, last)
        self._stats[team_id] = stats
        return stats

    async def count(self, team_id: str) -> int:
        """Number of archived messages of a workspace."""
        return await self._lexical.count(team_id)

    async def delete_channel(self, team_id: str, channel_id: str) -> int:
        """Delete every archived message of one channel, from both indexes; how many there were.

        Whole threads go with it (a thread never spans channels), so no context changes."""
        async with self._lock(team_id):
            return await self._delete_channel_rows(team_id, channel_id)

    async def _delete_channel_rows(self, team_id: str, channel_id: str) -> int:
        """`delete_channel` under the team lock held by the caller."""
        only = SearchFilters(channels=frozenset({channel_id}))
        deleted = 0
        while ids := await self._lexical.scope_ids(
            team_id, audience=Audience.everyone(), filters=only, limit=MAX_IDS
        ):
            await self._lexical.write(team_id, deletes=[parse_key(i) for i in ids])
            await self._read(team_id, functools.partial(_delete_many, keys=ids), False)
            deleted += len(ids)
        self._stats.pop(team_id, None)
        return deleted

    async def remove_channel(self, team_id: str, channel_id: str) -> int:
        """A channel deleted in Slack: its messages leave both indexes, and any later write of
        them (a backfill page read before the deletion) is dropped. How many there were."""
        async with self._lock(team_id):
            if self._kinds is not None:
                await self._kinds.record_deleted(team_id, channel_id)
            return await self._delete_channel_rows(team_id, channel_id)

    async def set_channel_type(self, team_id: str, channel_id: str, channel_type: str) -> int:
        """A channel made private or public: every message of it takes the new kind in both
        indexes at once, and later writes of the channel take it too. How many changed."""
        async with self._lock(team_id):
            if self._kinds is not None:
                await self._kinds.record(team_id, channel_id, channel_type)
            return await self._set_rows_type(team_id, channel_id, channel_type)

    async def _set_rows_type(self, team_id: str, channel_id: str, channel_type: str) -> int:
        """`set_channel_type` of the stored rows, under the team lock held by the caller.

        The record (what search shows and checks) changes first, then Chroma's metadata, which
        only steers the dense retrieval's `where` fallback."""
        changed = await self._lexical.set_channel_type(team_id, channel_id, channel_type)
        if (stats := self._stats.get(team_id)) is not None and channel_id in stats.types:
            stats.types[channel_id] = channel_type
        only = SearchFilters(channels=frozenset({channel_id}))
        ids = await self._lexical.scope_ids(
            team_id, audience=Audience.everyone(), filters=only, limit=2**62
        )
        step = max(1, self._store.max_batch_size)
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            metadatas: list[Metadata] = [{"channel_type": channel_type}] * len(chunk)
            await self._read(
                team_id, functools.partial(_update_many, ids=chunk, metas=metadatas), False
            )
        return changed

    async def delete_team(self, team_id: str) -> None:
        """Drop a workspace's whole archive, from both indexes."""
        async with self._lock(team_id):
            await self._lexical.delete_team(team_id)
            if self._kinds is not None:
                await self._kinds.delete_team(team_id)
            self._stats.pop(team_id, None)
            async with self._open_lock:
                self._collections.pop(team_id, None)
                await self._store.drop(self._name(team_id))

    async def halt_team(self, team_id: str) -> None:
        """Drop this process's cached handle and statistics of the workspace's collection (it is
        being forgotten, perhaps by another process)."""
        self._stats.pop(team_id, None)
        self._collections.pop(team_id, None)

    def resume_team(self, team_id: str) -> None:
        """Nothing to do: the collection is opened again when next needed."""

    async def close(self) -> None:
        """Release the Chroma client and the embedding thread (the SQL engine is the caller's)."""
        self._collections.clear()
        for task in list(self._reloading.values()):
            task.cancel()
        await asyncio.gather(*self._reloading.values(), return_exceptions=True)
        await self._store.close()
        await asyncio.to_thread(self._write_embedder.shutdown, wait=True)
        await self._queries.close()


async def _nothing() -> list[tuple[Note, float]]:
    return []


def _once(make: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """`make()`'s result, computed on the first call and shared by every later one."""
    started: asyncio.Future[T] | None = None

    async def get() -> T:
        nonlocal started
        if started is None:
            started = asyncio.ensure_future(make())
        return await asyncio.shield(started)

    return get


def _lower_priority() -> None:
    """Background embedding yields to request handling but still progresses on a busy host.

    A nice value, not SCHED_IDLE: an idle-class thread gets no CPU at all while other
    processes keep every core busy, and archiving would stop.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EMBED_NICENESS)


async def _delete(collection: ChromaCollection, key: str) -> bool:
    await collection.delete([key])
    return True


async def _delete_many(collection: ChromaCollection, keys: list[str], step: int = 5000) -> bool:
    for start in range(0, len(keys), step):
        await collection.delete(keys[start : start + step])
    return True


async def _update_many(collection: ChromaCollection, ids: list[str], metas: list[Metadata]) -> bool:
    await collection.update_metadata(ids, metas)
    return True
