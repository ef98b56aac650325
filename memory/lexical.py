"""The archive's lexical index and record of messages, in the SQL store (SQLite or PostgreSQL).

One row per archived message holds its metadata, its text, its author's name, and a `context`:
the texts of its thread neighbours (the previous and next message of the thread and the thread's
parent). The context is indexed with a lower weight than the text and the author's name, so a
message is also found by words its thread puts around it; a result is still the message itself.

- SQLite: an FTS5 table (porter stemming over unicode61) with the rows table as external content,
  kept in step by triggers; ranked by `bm25()`.
- PostgreSQL: a stored, generated `tsvector` (english configuration) with a GIN index; ranked by
  a BM25-style sum over the query's terms of idf(term) * ts_rank(term). Plain `ts_rank` has no
  document frequencies, so common words swamp rare ones: on LoCoMo its hit@5 was 0.643 against
  0.682 with the idf weights (`ts_rank_cd`: 0.578), FTS5's bm25 0.689. Each lexeme's document
  frequency per workspace is kept in `archive_terms` by triggers, so a search reads it by key.

A query's words are OR-ed (AND-ing a question's words finds almost nothing), after dropping
English stop words, which carry no ranking weight but would make every row a candidate.

This table is the record the archive answers from: `get`, `count`, `thread`, and every search
hit (lexical or dense) are read from here, so search never shows removed or outdated text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memory.audience import PUBLIC, Audience, audience_check_needed, sees_nothing
from memory.messages import ArchivedMessage, SearchFilters
from memory.ranking import Key, Ranking
from memory.schema_lock import lock_schema

CONTEXT_PART_CHARS = 1000  # of each neighbour's text kept in a context
MAX_TERMS = 32
IN_CHUNK = 400  # keys per IN (...) list
TOTAL_TTL = 600.0  # seconds a PostgreSQL workspace's message count is reused

# PostgreSQL's english.stop (the Snowball list): the same words both backends ignore.
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now""".split()
)
_WORD = re.compile(r"[^\W_]+")  # letters and digits: what unicode61 and the PG parser keep

TABLE = "archive_messages"
_metadata = MetaData()
messages = Table(
    TABLE,
    _metadata,
    Column("team_id", String, nullable=False),
    Column("channel_id", String, nullable=False),
    Column("ts", String, nullable=False),
    Column("ts_num", Float, nullable=False),
    Column("thread_key", String, nullable=False),
    Column("channel_type", String, nullable=False),
    Column("user_id", String),
    Column("thread_ts", String),
    Column("permalink", String),
    Column("is_bot", Boolean, nullable=False),
    Column("text", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("user_name", Text),
)
_RECORD = [
    messages.c.team_id,
    messages.c.channel_id,
    messages.c.channel_type,
    messages.c.ts,
    messages.c.text,
    messages.c.user_id,
    messages.c.thread_ts,
    messages.c.permalink,
    messages.c.is_bot,
    messages.c.user_name,
]

# Statements of every turn and every archive batch, built once (building one costs more CPU
# than running it on SQLite).
_THREAD = (
    select(*_RECORD)
    .where(
        messages.c.team_id == bindparam("team_id"),
        messages.c.channel_id == bindparam("channel_id"),
        messages.c.thread_key == bindparam("thread_key"),
    )
    .order_by(messages.c.ts_num, messages.c.ts)
)
_SET_CONTEXT = (
    update(messages)
    .where(
        messages.c.team_id == bindparam("b_team"),
        messages.c.channel_id == bindparam("b_channel"),
        messages.c.ts == bindparam("b_ts"),
    )
    .values(context=bindparam("b_context"))
)


def _upsert_statement(
    insert: sqlite.Insert | postgresql.Insert,
) -> sqlite.Insert | postgresql.Insert:
    """Insert a message row, or replace every column but its key when it is stored already."""
    keys = [messages.c.team_id.name, messages.c.channel_id.name, messages.c.ts.name]
    return insert.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: insert.excluded[c.name] for c in messages.c if c.name not in keys},
    )


_SQLITE_UPSERT = _upsert_statement(sqlite.insert(messages))
_POSTGRES_UPSERT = _upsert_statement(postgresql.insert(messages))

_COLUMNS = """
    team_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    ts_num {float} NOT NULL,
    thread_key TEXT NOT NULL,
    channel_type TEXT NOT NULL,
    user_id TEXT,
    thread_ts TEXT,
    permalink TEXT,
    is_bot BOOLEAN NOT NULL,
    text TEXT NOT NULL,
    context TEXT NOT NULL,
    scope TEXT NOT NULL,
    user_name TEXT,
    UNIQUE (team_id, channel_id, ts)"""
_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {TABLE}_thread "
    f"ON {TABLE} (team_id, channel_id, thread_key, ts_num)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_user ON {TABLE} (team_id, user_id, ts_num)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (team_id, ts_num)",
)
_FTS_COLUMNS = "text, context, scope, user_name"  # named as in the table, for 'rebuild'
_FTS_NEW = "new.id, new.text, new.context, new.scope, new.user_name"
_FTS_OLD = "'delete', old.id, old.text, old.context, old.scope, old.user_name"
SQLITE_FTS = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS archive_fts USING fts5({_FTS_COLUMNS}, "
    f"content='{TABLE}', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER IF NOT EXISTS archive_fts_insert AFTER INSERT ON {TABLE} BEGIN "
    f"INSERT INTO archive_fts(rowid, {_FTS_COLUMNS}) VALUES ({_FTS_NEW}); END",
    f"CREATE TRIGGER IF NOT EXISTS archive_fts_delete AFTER DELETE ON {TABLE} BEGIN "
    f"INSERT INTO archive_fts(archive_fts, rowid, {_FTS_COLUMNS}) VALUES ({_FTS_OLD}); END",
    f"CREATE TRIGGER IF NOT EXISTS archive_fts_update AFTER UPDATE OF {_FTS_COLUMNS} "
    f"ON {TABLE} BEGIN INSERT INTO archive_fts(archive_fts, rowid, {_FTS_COLUMNS}) "
    f"VALUES ({_FTS_OLD}); INSERT INTO archive_fts(rowid, {_FTS_COLUMNS}) VALUES ({_FTS_NEW}); END",
)
SQLITE_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY,"
    + _COLUMNS.format(float="REAL")
    + ")",
    *_INDEXES,
    *SQLITE_FTS,
)
# Before the author's name was indexed: add the column, rebuild the full-text index with it.
SQLITE_ADD_USER_NAME = (
    f"ALTER TABLE {TABLE} ADD COLUMN user_name TEXT",
    "DROP TRIGGER IF EXISTS archive_fts_insert",
    "DROP TRIGGER IF EXISTS archive_fts_delete",
    "DROP TRIGGER IF EXISTS archive_fts_update",
    "DROP TABLE IF EXISTS archive_fts",
    *SQLITE_FTS,
    "INSERT INTO archive_fts(archive_fts) VALUES ('rebuild')",
)
# Text and author weigh the same (A), the thread context less (B).
_TSV = (
    "tsv tsvector GENERATED ALWAYS AS (setweight(to_tsvector('english', text), 'A') "
    "|| setweight(to_tsvector('english', coalesce(user_name, '')), 'A') "
    "|| setweight(to_tsvector('english', context), 'B')) STORED"
)
POSTGRES_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGSERIAL PRIMARY KEY,"
    + _COLUMNS.format(float="DOUBLE PRECISION")
    + f", {_TSV})",
    *_INDEXES,
    f"CREATE INDEX IF NOT EXISTS {TABLE}_tsv ON {TABLE} USING gin (tsv)",
)
POSTGRES_ADD_USER_NAME = (
    f"ALTER TABLE {TABLE} ADD COLUMN user_name TEXT",
    f"ALTER TABLE {TABLE} DROP COLUMN tsv",
    f"ALTER TABLE {TABLE} ADD COLUMN {_TSV}",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_tsv ON {TABLE} USING gin (tsv)",
)

# Each workspace's document frequency of every lexeme, kept by statement triggers in the same
# transaction as the rows (a search reads a term's frequency by its key instead of counting
# the rows that hold it: 7 ms for a word in 8% of 100,000 messages). Writes of one workspace
# take a transaction lock first (`_PG_TEAM_LOCK`), so two processes never update the same
# frequencies in opposite orders.
TERMS = "archive_terms"
_LEXEMES = "unnest(tsvector_to_array(r.tsv)) AS l"
_ADD_COUNTS = f"""
INSERT INTO {TERMS} (team_id, lexeme, df)
SELECT team_id, l, sum(n) FROM ({{counts}}) AS c GROUP BY team_id, l HAVING sum(n) <> 0
ORDER BY team_id, l
ON CONFLICT (team_id, lexeme) DO UPDATE SET df = {TERMS}.df + excluded.df
"""
_PLUS = f"SELECT r.team_id, l, 1 AS n FROM new_rows AS r, {_LEXEMES}"
_MINUS = f"SELECT r.team_id, l, -1 AS n FROM old_rows AS r, {_LEXEMES}"
_TRIGGERS = {
    "insert": ("NEW TABLE AS new_rows", _PLUS),
    "delete": ("OLD TABLE AS old_rows", _MINUS),
    "update": ("OLD TABLE AS old_rows NEW TABLE AS new_rows", f"{_PLUS} UNION ALL {_MINUS}"),
}
POSTGRES_TERMS = (
    f"CREATE TABLE IF NOT EXISTS {TERMS} (team_id TEXT NOT NULL, lexeme TEXT NOT NULL, "
    "df INTEGER NOT NULL, PRIMARY KEY (team_id, lexeme))",
    *(
        statement
        for operation, (tables, counts) in _TRIGGERS.items()
        for statement in (
            f"CREATE OR REPLACE FUNCTION {TERMS}_{operation}() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN {_ADD_COUNTS.format(counts=counts)}; RETURN NULL; END $$",
            f"DROP TRIGGER IF EXISTS {TERMS}_{operation} ON {TABLE}",
            f"CREATE TRIGGER {TERMS}_{operation} AFTER {operation.upper()} ON {TABLE} "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {TERMS}_{operation}()",
        )
    ),
)
# Once, when the table is new: the frequencies of the rows already there.
POSTGRES_FILL_TERMS = (
    f"LOCK TABLE {TABLE} IN SHARE MODE",
    f"DELETE FROM {TERMS}",
    _ADD_COUNTS.format(counts=f"SELECT r.team_id, l, 1 AS n FROM {TABLE} AS r, {_LEXEMES}"),
)
_PG_TEAM_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(:team, 7266203010))"
# BM25's idf of each query term, from its kept document frequency: that of its rarest lexeme (a
# plain word has one; a stop word none, and no weight below), in the same statement as the search.
POSTGRES_SEARCH = f"""
WITH weights AS MATERIALIZED (
    SELECT websearch_to_tsquery('english', u.t) AS tq,
        ln(1.0 + (greatest(CAST(:total AS float8), d.n) - d.n + 0.5) / (d.n + 0.5)) AS idf
    FROM unnest(CAST(:terms AS text[])) AS u(t)
    CROSS JOIN LATERAL (
        SELECT CAST(coalesce(min(coalesce(f.df, 0)), 0) AS float8) AS n
        FROM unnest(tsvector_to_array(to_tsvector('english', u.t))) AS l
        LEFT JOIN {TERMS} AS f ON f.team_id = :team AND f.lexeme = l
    ) AS d
)
SELECT m.channel_id, m.ts, (
    SELECT sum(w.idf * ts_rank(CAST(:weights AS real[]), m.tsv, w.tq, 1))
    FROM weights AS w WHERE numnode(w.tq) > 0
) AS score
FROM {TABLE} AS m
WHERE m.tsv @@ websearch_to_tsquery('english', :query) AND {{scope}}
ORDER BY score DESC, m.id
LIMIT :limit
"""
SQLITE_SEARCH = f"""
SELECT m.channel_id, m.ts
FROM archive_fts JOIN {TABLE} AS m ON m.id = archive_fts.rowid
WHERE archive_fts MATCH :match AND {{scope}}
ORDER BY bm25(archive_fts, 1.0, :context_weight, 0.0, 1.0), m.id
LIMIT :limit
"""

ThreadId = tuple[str, str]  # (channel_id, thread_key)


@dataclass(frozen=True)
class ThreadRow:
    """What the context of a thread's messages is computed from."""

    ts: str
    ts_num: float
    text: str  # the first CONTEXT_PART_CHARS characters
    context: str


def query_terms(query: str) -> list[str]:
    """The query's distinct words, lower-cased, stop words dropped, at most MAX_TERMS."""
    terms: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        if word not in STOPWORDS:
            terms.setdefault(word)
            if len(terms) == MAX_TERMS:
                break
    return list(terms)


_ID = re.compile(r"[A-Za-z0-9]+")


def _token(prefix: str, value: str) -> str | None:
    """A scope token for an id, or None if the id has characters the tokenizer would split."""
    return f"{prefix}{value.lower()}" if _ID.fullmatch(value) else None


def scope_tokens(message: ArchivedMessage) -> str:
    """The `scope` column: tokens of the message's channel, author and publicness.

    They let FTS5 intersect a query's words with a channel or user filter inside the index,
    instead of ranking every match and filtering after; the SQL conditions stay the rule.
    """
    tokens = [_token("zch", message.channel_id), _token("zus", message.user_id or "")]
    if message.channel_type == PUBLIC:
        tokens.append("zpub")
    return " ".join(t for t in tokens if t)


def _any_of(prefix: str, values: Iterable[str]) -> str | None:
    tokens = [_token(prefix, v) for v in sorted(values)]
    if not tokens or None in tokens:
        return None
    return "scope: (" + " OR ".join(str(t) for t in tokens) + ")"


def fts_match(terms: Sequence[str], audience: Audience, filters: SearchFilters) -> str:
    """The FTS5 query: any of the terms in the text or its context, and the selective scope
    conditions (channel and user filters, a non-public audience) as scope tokens."""
    words = " OR ".join(f'"{t}"' for t in terms)
    parts: list[str | None] = [f"{{text context user_name}}: ({words})"]
    if filters.channels is not None:
        parts.append(_any_of("zch", filters.channels))
    if filters.user_id is not None:
        parts.append(_any_of("zus", [filters.user_id]))
    if audience_check_needed(audience, filters.channels) and not audience.public:
        parts.append(_any_of("zch", audience.channels))
    return " AND ".join(p for p in parts if p)


def thread_contexts(rows: Sequence[ThreadRow], thread_key: str) -> dict[str, str]:
    """ts -> context of each message of one thread: its parent (unless that is the previous
    message), previous and next messages, each cut to CONTEXT_PART_CHARS."""
    ordered = sorted(rows, key=lambda r: (r.ts_num, r.ts))
    parent = next((r for r in ordered if r.ts == thread_key), None)
    contexts: dict[str, str] = {}
    for i, row in enumerate(ordered):
        parts: list[str] = []
        if parent is not None and i >= 2 and row is not parent:
            parts.append(parent.text)
        if i > 0:
            parts.append(ordered[i - 1].text)
        if i + 1 < len(ordered):
            parts.append(ordered[i + 1].text)
        contexts[row.ts] = "\n".join(p[:CONTEXT_PART_CHARS] for p in parts)
    return contexts


def scope_sql(
    team_id: str, audience: Audience, filters: SearchFilters
) -> tuple[str, dict[str, Any], list[str]]:
    """SQL conditions on rows `m` for a team, audience and filters: (sql, params, expanding)."""
    conditions = ["m.team_id = :team"]
    params: dict[str, Any] = {"team": team_id}
    expanding: list[str] = []
    if audience_check_needed(audience, filters.channels):
        allowed = [f"m.channel_type = '{PUBLIC}'"] if audience.public else []
        if audience.channels:
            allowed.append("m.channel_id IN :audience")
            params["audience"] = sorted(audience.channels)
            expanding.append("audience")
        conditions.append("(" + (" OR ".join(allowed) or "1 = 0") + ")")
    if filters.channels is not None:
        conditions.append("m.channel_id IN :channels")
        params["channels"] = sorted(filters.channels)
        expanding.append("channels")
    if filters.user_id is not None:
        conditions.append("m.user_id = :user")
        params["user"] = filters.user_id
    if filters.after is not None:
        conditions.append("m.ts_num >= :after")
        params["after"] = float(filters.after)
    if filters.before is not None:
        conditions.append("m.ts_num < :before")
        params["before"] = float(filters.before)
    return " AND ".join(conditions), params, expanding


def _message(row: Row[Any]) -> ArchivedMessage:
    return ArchivedMessage(
        team_id=row.team_id,
        channel_id=row.channel_id,
        channel_type=row.channel_type,
        ts=row.ts,
        text=row.text,
        user_id=row.user_id,
        thread_ts=row.thread_ts,
        permalink=row.permalink,
        is_bot=bool(row.is_bot),
        user_name=row.user_name,
    )


def _pairs(pairs: Sequence[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """A CTE `k(a, b)` of string pairs, and its parameters.

    Joined to the table it makes both SQLite and PostgreSQL look each pair up in an index;
    a row-value IN list does not (SQLite scans the whole team).
    """
    rows = ", ".join(f"(:a{i}, :b{i})" for i in range(len(pairs)))
    params = {f"{n}{i}": v for i, pair in enumerate(pairs) for n, v in zip("ab", pair, strict=True)}
    return f"WITH k(a, b) AS (VALUES {rows})", params


async def _open_terms(connection: AsyncConnection) -> None:
    """The document-frequency table and its triggers; filled from the rows when it is new."""
    new = not await connection.run_sync(lambda sync: inspect(sync).has_table(TERMS))
    for statement in POSTGRES_TERMS:
        await connection.execute(text(statement))
    if new:
        for statement in POSTGRES_FILL_TERMS:
            await connection.execute(text(statement))


def _column_names(connection: Connection) -> set[str]:
    """The messages table's columns; {"user_name"} when there is no table yet (nothing to add)."""
    inspector = inspect(connection)
    if not inspector.has_table(TABLE):
        return {"user_name"}
    return {column["name"] for column in inspector.get_columns(TABLE)}


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LexicalIndex:
    """The messages table and its full-text index, on Lore's SQLAlchemy async engine."""

    def __init__(
        self, engine: AsyncEngine, *, context_weight: float = Ranking.context_weight
    ) -> None:
        self._engine = engine
        # Reads on PostgreSQL run outside a transaction: each statement reads its own snapshot
        # either way, and BEGIN and ROLLBACK would be two more round trips per read.
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self._context_weight = context_weight
        self._postgres = engine.dialect.name == "postgresql"
        self._totals: dict[str, tuple[int, float]] = {}
        if not self._postgres and engine.dialect.name != "sqlite":
            raise ValueError(
                f"the archive's lexical index needs SQLite or PostgreSQL, not {engine.dialect.name}"
            )

    @classmethod
    async def open(
        cls, engine: AsyncEngine, *, context_weight: float = Ranking.context_weight
    ) -> LexicalIndex:
        """The index, its tables created if missing (idempotent; safe from several processes).

        context_weight: how much a match in the thread context counts against one in the text.
        """
        index = cls(engine, context_weight=context_weight)
        async with engine.begin() as connection:
            await lock_schema(connection)
            if "user_name" not in await connection.run_sync(_column_names):
                for statement in (
                    POSTGRES_ADD_USER_NAME if index._postgres else SQLITE_ADD_USER_NAME
                ):
                    await connection.execute(text(statement))
            for statement in POSTGRES_SCHEMA if index._postgres else SQLITE_SCHEMA:
                await connection.execute(text(statement))
            if index._postgres:
                await _open_terms(connection)
        return index

    # Reading the record

    async def get_many(self, team_id: str, keys: Sequence[Key]) -> dict[Key, ArchivedMessage]:
        """The archived messages among keys."""
        found: dict[Key, ArchivedMessage] = {}
        columns = ", ".join(f"m.{c.name}" for c in _RECORD)
        async with self._reads.connect() as connection:
            for chunk in _chunks(list(dict.fromkeys(keys))):
                cte, params = _pairs(chunk)
                query = text(
                    f"{cte} SELECT {columns} FROM k JOIN {TABLE} AS m "
                    "ON m.team_id = :team AND m.channel_id = k.a AND m.ts = k.b"
                )
                for row in await connection.execute(query, {**params, "team": team_id}):
                    found[(row.channel_id, row.ts)] = _message(row)
        return found

    async def count(self, team_id: str) -> int:
        query = select(func.count()).select_from(messages).where(messages.c.team_id == team_id)
        async with self._reads.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def thread(self, team_id: str, channel_id: str, thread_ts: str) -> list[ArchivedMessage]:
        """A thread's messages (the parent included), oldest first."""
        params = {"team_id": team_id, "channel_id": channel_id, "thread_key": thread_ts}
        async with self._reads.connect() as connection:
            return [_message(row) for row in await connection.execute(_THREAD, params)]

    async def channel_stats(self, team_id: str) -> list[tuple[str, str, int, float, float]]:
        """(channel_id, channel_type, messages, first ts, last ts) of each channel."""
        query = (
            select(
                messages.c.channel_id,
                messages.c.channel_type,
                func.count(),
                func.min(messages.c.ts_num),
                func.max(messages.c.ts_num),
            )
            .where(messages.c.team_id == team_id)
            .group_by(messages.c.channel_id, messages.c.channel_type)
        )
        async with self._reads.connect() as connection:
            return [
                (row[0], row[1], int(row[2]), float(row[3]), float(row[4]))
                for row in await connection.execute(query)
            ]

    async def scope_ids(
        self, team_id: str, *, audience: Audience, filters: SearchFilters, limit: int
    ) -> list[str]:
        """Record ids (`message_key`) of the messages within the audience and filters, at most
        limit, in no order. Joined into one string in SQL: returning 20,000 rows one by one
        through the async driver costs ten times more."""
        if sees_nothing(audience, filters.channels):
            return []
        scope, params, expanding = scope_sql(team_id, audience, filters)
        params["limit"] = limit
        join = "string_agg(id, ',')" if self._postgres else "group_concat(id, ',')"
        statement = text(
            f"SELECT {join} FROM (SELECT m.channel_id || ':' || m.ts AS id "
            f"FROM {TABLE} AS m WHERE {scope} LIMIT :limit) AS scope"
        ).bindparams(*(bindparam(n, expanding=True) for n in expanding))
        async with self._reads.connect() as connection:
            joined = (await connection.execute(statement, params)).scalar()
        return str(joined).split(",") if joined else []

    async def key_page(self, team_id: str, after: Key | None, limit: int) -> list[Key]:
        """Up to limit keys of the team's messages after `after`, in key order (paging
        through a whole workspace by its unique index)."""
        query = (
            select(messages.c.channel_id, messages.c.ts)
            .where(messages.c.team_id == team_id)
            .order_by(messages.c.channel_id, messages.c.ts)
            .limit(limit)
        )
        if after is not None:
            channel_id, ts = after
            query = query.where(
                (messages.c.channel_id > channel_id)
                | ((messages.c.channel_id == channel_id) & (messages.c.ts > ts))
            )
        async with self._reads.connect() as connection:
            return [(row.channel_id, row.ts) for row in await connection.execute(query)]

    async def teams(self) -> list[str]:
        """The workspaces with archived messages."""
        query = select(messages.c.team_id).distinct().order_by(messages.c.team_id)
        async with self._reads.connect() as connection:
            return [str(team) for team in (await connection.execute(query)).scalars()]

    async def thread_rows(
        self, team_id: str, threads: Iterable[ThreadId]
    ) -> dict[ThreadId, list[ThreadRow]]:
        """The stored messages of these threads, for computing contexts."""
        wanted = sorted(set(threads))
        found: dict[ThreadId, list[ThreadRow]] = {t: [] for t in wanted}
        async with self._reads.connect() as connection:
            for chunk in _chunks(wanted):
                cte, params = _pairs(chunk)
                query = text(
                    f"{cte} SELECT m.channel_id, m.thread_key, m.ts, m.ts_num, "
                    f"substr(m.text, 1, {CONTEXT_PART_CHARS}) AS text, m.context "
                    f"FROM k JOIN {TABLE} AS m "
                    "ON m.team_id = :team AND m.channel_id = k.a AND m.thread_key = k.b"
                )
                for row in await connection.execute(query, {**params, "team": team_id}):
                    found[(row.channel_id, row.thread_key)].append(
                        ThreadRow(row.ts, float(row.ts_num), row.text, row.context)
                    )
        return found

    # Writing

    async def write(
        self,
        team_id: str,
        *,
        upserts: Sequence[tuple[ArchivedMessage, str]] = (),
        contexts: Sequence[tuple[Key, str]] = (),
        deletes: Sequence[Key] = (),
    ) -> int:
        """In one transaction: delete keys, insert or replace (message, context) rows, and set
        the context of other rows. Returns the number of rows deleted."""
        deleted = 0
        async with self._engine.begin() as connection:
            if self._postgres:
                await connection.execute(text(_PG_TEAM_LOCK), {"team": team_id})
            for channel_id, ts in deletes:
                result = await connection.execute(
                    delete(messages).where(
                        messages.c.team_id == team_id,
                        messages.c.channel_id == channel_id,
                        messages.c.ts == ts,
                    )
                )
                deleted += int(getattr(result, "rowcount", 0) or 0)
            if upserts:
                await self._upsert(connection, upserts)
            if contexts:
                await connection.execute(
                    _SET_CONTEXT,
                    [
                        {"b_team": team_id, "b_channel": c, "b_ts": ts, "b_context": context}
                        for (c, ts), context in contexts
                    ],
                )
        return deleted

    async def _upsert(
        self, connection: AsyncConnection, rows: Sequence[tuple[ArchivedMessage, str]]
    ) -> None:
        statement = _POSTGRES_UPSERT if self._postgres else _SQLITE_UPSERT
        values = [
            {
                "team_id": m.team_id,
                "channel_id": m.channel_id,
                "ts": m.ts,
                "ts_num": float(m.ts),
                "thread_key": m.thread_key,
                "channel_type": m.channel_type,
                "user_id": m.user_id,
                "thread_ts": m.thread_ts,
                "permalink": m.permalink,
                "is_bot": m.is_bot,
                "text": m.text,
                "context": context,
                "scope": scope_tokens(m),
                "user_name": m.user_name,
            }
            for m, context in rows
        ]
        for chunk in _chunks(values, 1000):
            await connection.execute(statement, list(chunk))

    async def delete_team(self, team_id: str) -> None:
        async with self._engine.begin() as connection:
            if self._postgres:
                await connection.execute(text(_PG_TEAM_LOCK), {"team": team_id})
            await connection.execute(delete(messages).where(messages.c.team_id == team_id))
            if self._postgres:
                await connection.execute(
                    text(f"DELETE FROM {TERMS} WHERE team_id = :team"), {"team": team_id}
                )
        self.forget_team(team_id)

    async def set_channel_type(self, team_id: str, channel_id: str, channel_type: str) -> int:
        """Give every message of one channel this kind, and the scope tokens that go with it
        (`zpub` only for public channels); how many rows changed."""
        unscoped = "trim(replace(' ' || scope || ' ', ' zpub ', ' '))"
        scope = f"trim({unscoped} || ' zpub')" if channel_type == PUBLIC else unscoped
        statement = text(
            f"UPDATE {TABLE} SET channel_type = :kind, scope = {scope} "
            "WHERE team_id = :team AND channel_id = :channel AND channel_type <> :kind"
        )
        params = {"team": team_id, "channel": channel_id, "kind": channel_type}
        async with self._engine.begin() as connection:
            result = await connection.execute(statement, params)
        return int(getattr(result, "rowcount", 0) or 0)

    # Searching

    async def search(
        self,
        team_id: str,
        query: str,
        *,
        audience: Audience,
        filters: SearchFilters,
        limit: int,
    ) -> list[Key]:
        """Keys of the best lexical matches within the audience and filters, best first."""
        terms = query_terms(query)
        if not terms or limit <= 0 or sees_nothing(audience, filters.channels):
            return []
        scope, params, expanding = scope_sql(team_id, audience, filters)
        params["limit"] = limit
        async with self._reads.connect() as connection:
            if self._postgres:
                sql = POSTGRES_SEARCH.format(scope=scope)
                total = await self._team_size(connection, team_id)
                params.update(terms=terms, total=total, query=" or ".join(terms))
                params["weights"] = [0.0, 0.0, self._context_weight, 1.0]
            else:
                sql = SQLITE_SEARCH.format(scope=scope)
                params["match"] = fts_match(terms, audience, filters)
                params["context_weight"] = self._context_weight
            statement = text(sql).bindparams(*(bindparam(n, expanding=True) for n in expanding))
            rows = await connection.execute(statement, params)
            return [(row.channel_id, row.ts) for row in rows]

    async def _team_size(self, connection: AsyncConnection, team_id: str) -> int:
        """The team's number of messages, counted at most once per TOTAL_TTL seconds."""
        now = time.monotonic()
        cached = self._totals.get(team_id)
        if cached is None or now - cached[1] > TOTAL_TTL:
            count = select(func.count()).select_from(messages).where(messages.c.team_id == team_id)
            cached = (int((await connection.execute(count)).scalar_one()), now)
            self._totals[team_id] = cached
        return cached[0]

    def forget_team(self, team_id: str) -> None:
        """Drop cached statistics of a team."""
        self._totals.pop(team_id, None)
