"""An archive made before authors' names were indexed is upgraded when the index opens.

The old tables are written here as that version created them; opening the index adds the
`user_name` column and re-indexes the old rows, which stay searchable, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from memory.audience import Audience
from memory.lexical import LexicalIndex
from memory.messages import ArchivedMessage, SearchFilters
from tests.conftest import postgres_schema

COLUMNS = """
    team_id TEXT NOT NULL, channel_id TEXT NOT NULL, ts TEXT NOT NULL,
    ts_num {float} NOT NULL, thread_key TEXT NOT NULL, channel_type TEXT NOT NULL,
    user_id TEXT, thread_ts TEXT, permalink TEXT, is_bot BOOLEAN NOT NULL,
    text TEXT NOT NULL, context TEXT NOT NULL, scope TEXT NOT NULL,
    UNIQUE (team_id, channel_id, ts)"""
OLD_SQLITE = (
    f"CREATE TABLE archive_messages (id INTEGER PRIMARY KEY, {COLUMNS.format(float='REAL')})",
    "CREATE VIRTUAL TABLE archive_fts USING fts5(text, context, scope, "
    "content='archive_messages', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER archive_fts_insert AFTER INSERT ON archive_messages BEGIN "
    "INSERT INTO archive_fts(rowid, text, context, scope) "
    "VALUES (new.id, new.text, new.context, new.scope); END",
)
OLD_POSTGRES = (
    f"CREATE TABLE archive_messages (id BIGSERIAL PRIMARY KEY, "
    f"{COLUMNS.format(float='DOUBLE PRECISION')}, "
    "tsv tsvector GENERATED ALWAYS AS (setweight(to_tsvector('english', text), 'A') "
    "|| setweight(to_tsvector('english', context), 'B')) STORED)",
)
OLD_ROW = (
    "INSERT INTO archive_messages (team_id, channel_id, ts, ts_num, thread_key, channel_type, "
    "user_id, is_bot, text, context, scope) VALUES ('T1', 'C1', '1700000000.000100', "
    "1700000000.0001, '1700000000.000100', 'channel', 'U1', false, "
    "'The old wiki lives on the intranet.', '', 'zchc1 zusu1 zpub')"
)


@pytest.fixture(params=["sqlite", "postgresql"])
async def old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a database holding the old tables and one old row."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
            stack.push_async_callback(engine.dispose)
            statements: tuple[str, ...] = OLD_SQLITE
        else:
            engine = await stack.enter_async_context(postgres_schema("upgrade_"))
            statements = OLD_POSTGRES
        async with engine.begin() as connection:
            for statement in (*statements, OLD_ROW):
                await connection.execute(text(statement))
        yield engine


async def test_opening_adds_the_author_and_keeps_old_rows_searchable(
    old_engine: AsyncEngine,
) -> None:
    index = await LexicalIndex.open(old_engine)
    everyone, no_filters = Audience.everyone(), SearchFilters()
    found = await index.search(
        "T1", "intranet wiki", audience=everyone, filters=no_filters, limit=5
    )
    assert found == [("C1", "1700000000.000100")]
    old = (await index.get_many("T1", found))[found[0]]
    assert old.user_name is None and old.text == "The old wiki lives on the intranet."

    named = ArchivedMessage(
        team_id="T1",
        channel_id="C1",
        channel_type="channel",
        ts="1700000100.000100",
        text="I moved the wiki to Notion.",
        user_id="U2",
        user_name="Grace Hopper",
    )
    await index.write("T1", upserts=[(named, "")])
    by_author = await index.search(
        "T1", "what did grace write", audience=everyone, filters=no_filters, limit=5
    )
    assert by_author == [("C1", named.ts)]
    assert (await index.get_many("T1", by_author))[by_author[0]] == named
    again = await LexicalIndex.open(old_engine)  # a second open changes nothing
    assert await again.count("T1") == 2
