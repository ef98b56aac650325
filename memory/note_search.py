"""Finding notes by words and by meaning, within an audience, as the archive finds messages.

- lexical: SQLite's FTS5 table `notes_fts` (porter stemming, kept in step by triggers) ranked by
  `bm25()`; PostgreSQL's `english` tsvector of the text (a GIN index) ranked by `ts_rank`. The
  query's words are OR-ed, stop words dropped, as for messages (`memory.lexical.query_terms`).
- dense: each note's embedding (`note_vectors`, written with the note), compared with the
  query's by dot product (unit vectors) over the active notes the audience may read.

One statement reads both: the word matches and every candidate's vector. Both rankings are
fused by the archive's reciprocal rank fusion. Only active notes whose channel
the audience may read, within the search's filters, are candidates; retracted ones never are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from sqlalchemy import DDL, bindparam, event, text

from memory.audience import PUBLIC, Audience, audience_check_needed, sees_nothing
from memory.db import Base
from memory.embeddings import Embedder
from memory.lexical import query_terms
from memory.messages import SearchFilters
from memory.notes import Note, Notes
from memory.ranking import Ranking

MIN_SIMILARITY = 0.2
"""A note less similar to the query than this is no dense candidate (unrelated texts score
about 0 to 0.15 with all-MiniLM-L6-v2)."""


_SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS notes_fts USING fts5(note_id UNINDEXED, "
    "team_id UNINDEXED, text, tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS notes_fts_insert AFTER INSERT ON notes BEGIN "
    "INSERT INTO notes_fts(note_id, team_id, text) VALUES (new.id, new.team_id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS notes_fts_delete AFTER DELETE ON notes BEGIN "
    "DELETE FROM notes_fts WHERE note_id = old.id; END",
)
_POSTGRES_DDL = (
    "CREATE INDEX IF NOT EXISTS notes_tsv ON notes USING gin (to_tsvector('english', text))",
)
for _statement in _SQLITE_DDL:
    event.listen(Base.metadata, "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _POSTGRES_DDL:
    event.listen(Base.metadata, "after_create", DDL(_statement).execute_if(dialect="postgresql"))

_SQLITE_WORDS = """
SELECT n.id, bm25(notes_fts) AS place FROM notes_fts AS f JOIN notes AS n ON n.id = f.note_id
WHERE notes_fts MATCH :match AND n.team_id = :team AND n.retracted_at IS NULL AND {scope}
ORDER BY place, n.id
LIMIT :limit
"""
_POSTGRES_WORDS = """
SELECT n.id, -ts_rank(to_tsvector('english', n.text), to_tsquery('english', :query)) AS place
FROM notes AS n
WHERE to_tsvector('english', n.text) @@ to_tsquery('english', :query)
  AND n.team_id = :team AND n.retracted_at IS NULL AND {scope}
ORDER BY place, n.id
LIMIT :limit
"""
_VECTORS = """
SELECT n.id, NULL AS place, v.vector FROM notes AS n JOIN note_vectors AS v ON v.note_id = n.id
WHERE n.team_id = :team AND n.retracted_at IS NULL AND v.space = :space AND {scope}
"""
_WORDS_AND_VECTORS = """
SELECT words.id, words.place, NULL AS vector FROM ({words}) AS words
UNION ALL {vectors}
"""
"""The best matches by words (their `place`, best lowest) and every candidate's vector, in one
round trip: rows with a vector are the dense candidates."""

QueryVector = Callable[[], Awaitable[list[float]]]


class NoteSearch:
    """Finds the active notes an audience may read (`Notes` indexes them as it writes them)."""

    def __init__(self, notes: Notes, embedder: Embedder, ranking: Ranking | None = None) -> None:
        self._engine = notes.engine
        self._notes = notes
        self._embedder = embedder
        self._ranking = ranking or Ranking()
        self._postgres = notes.engine.dialect.name == "postgresql"

    async def search(
        self,
        team_id: str,
        query: str,
        *,
        audience: Audience,
        filters: SearchFilters,
        limit: int,
        query_vector: QueryVector | None = None,
    ) -> list[tuple[Note, float]]:
        """The best active notes for `query` the audience may read, with their fused scores.

        A user filter finds no notes (a note is nobody's message); date filters hold against a
        note's first source message."""
        if limit <= 0 or filters.user_id is not None or sees_nothing(audience, filters.channels):
            return []
        depth = max(self._ranking.depth, 2 * limit)
        lexical, vectors = await self._candidates(team_id, query, audience, filters, depth)
        dense = await self._dense(
            vectors, query_vector or (lambda: self._embed_query(query)), depth
        )
        scores = self._ranking.fuse([("", i) for i in lexical], [("", i) for i in dense])
        ranked = sorted(scores, key=lambda key: -scores[key])
        found = {n.id: n for n in await self._notes.many(team_id, [i for _, i in ranked])}
        hits: list[tuple[Note, float]] = []
        for key in ranked:
            note = found.get(key[1])
            if note is not None and note.active and _passes(note, audience, filters):
                hits.append((note, scores[key]))
        return hits[:limit]

    async def _embed_query(self, query: str) -> list[float]:
        return (await asyncio.to_thread(self._embedder.embed, [query]))[0]

    async def _candidates(
        self,
        team_id: str,
        query: str,
        audience: Audience,
        filters: SearchFilters,
        limit: int,
    ) -> tuple[list[str], list[tuple[str, bytes]]]:
        """The best `limit` note ids by words, best first, and every candidate's (id, vector)."""
        scope, params = _scope_sql(audience, filters)
        params.update(team=team_id, space=self._embedder.name)
        sql = _VECTORS.format(scope=scope)
        terms = query_terms(query)
        if terms:
            params["limit"] = limit
            if self._postgres:
                words = _POSTGRES_WORDS.format(scope=scope)
                params["query"] = " | ".join(terms)
            else:
                words = _SQLITE_WORDS.format(scope=scope)
                params["match"] = "text: (" + " OR ".join(f'"{t}"' for t in terms) + ")"
            sql = _WORDS_AND_VECTORS.format(words=words, vectors=sql)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_bind(sql, params), params)).all()
        found = sorted((row.place, row.id) for row in rows if row.vector is None)
        vectors = [(str(row.id), bytes(row.vector)) for row in rows if row.vector is not None]
        return [str(note_id) for _, note_id in found], vectors

    async def _dense(
        self, vectors: list[tuple[str, bytes]], query_vector: QueryVector, limit: int
    ) -> list[str]:
        """The ids of the notes most similar to the query, best first."""
        if not vectors:
            return []
        matrix = np.frombuffer(b"".join(vector for _, vector in vectors), dtype=np.float32)
        matrix = matrix.reshape(len(vectors), -1)
        similarity = matrix @ np.asarray(await query_vector(), dtype=np.float32)
        order = np.argsort(-similarity)[:limit]
        return [vectors[i][0] for i in order if similarity[i] >= MIN_SIMILARITY]


def _scope_sql(audience: Audience, filters: SearchFilters) -> tuple[str, dict[str, Any]]:
    """SQL conditions on `n` (notes) for the audience and the channel filter, and their params."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if audience_check_needed(audience, filters.channels):
        allowed = []
        if audience.public:
            allowed.append("n.channel_type = :public")
            params["public"] = PUBLIC
        if audience.channels:
            allowed.append("n.channel_id IN :audience_channels")
            params["audience_channels"] = sorted(audience.channels)
        conditions.append("(" + " OR ".join(allowed) + ")" if allowed else "1 = 0")
    if filters.channels is not None:
        conditions.append("n.channel_id IN :filter_channels")
        params["filter_channels"] = sorted(filters.channels)
    return " AND ".join(conditions) or "1 = 1", params


def _bind(sql: str, params: dict[str, Any]) -> Any:
    expanding = [n for n in ("audience_channels", "filter_channels") if n in params]
    return text(sql).bindparams(*(bindparam(n, expanding=True) for n in expanding))


def _passes(note: Note, audience: Audience, filters: SearchFilters) -> bool:
    if not audience.allows(note.channel_id, note.channel_type):
        return False
    if filters.channels is not None and note.channel_id not in filters.channels:
        return False
    when = float(note.sources[0].ts) if note.sources else 0.0
    return (filters.after is None or when >= filters.after) and (
        filters.before is None or when < filters.before
    )
