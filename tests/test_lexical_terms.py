"""PostgreSQL's kept document frequencies always equal a count of the rows, whatever the writes.

Each test runs in a schema of its own, so the shared database's other rows never count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memory.audience import Audience
from memory.lexical import TABLE, TERMS, LexicalIndex
from memory.messages import ArchivedMessage, SearchFilters
from tests.conftest import postgres_engine_or_skip, postgres_schema

NOW = "SELECT now()"  # the start of the statement's transaction


async def one_transaction(connection: AsyncConnection) -> bool:
    """Whether two statements on the connection ran in one transaction."""
    first = (await connection.execute(text(NOW))).scalar_one()
    return bool(first == (await connection.execute(text(NOW))).scalar_one())


KEPT = f"SELECT team_id, lexeme, df FROM {TERMS} WHERE df <> 0"
COUNTED = (
    f"SELECT team_id, l, count(*) FROM {TABLE}, unnest(tsvector_to_array(tsv)) AS l "
    "GROUP BY team_id, l"
)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    async with postgres_schema("terms_") as engine:
        yield engine


def message(team: str, ts: str, words: str, channel: str = "C1") -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team, channel_id=channel, channel_type="channel", ts=ts, text=words, user_id="U1"
    )


async def frequencies(
    engine: AsyncEngine,
) -> tuple[set[tuple[str, str, int]], set[tuple[str, str, int]]]:
    """The kept frequencies and a fresh count of the rows, as (team, lexeme, df) sets."""
    async with engine.connect() as connection:
        kept = {(t, lexeme, int(n)) for t, lexeme, n in await connection.execute(text(KEPT))}
        counted = {(t, lexeme, int(n)) for t, lexeme, n in await connection.execute(text(COUNTED))}
    return kept, counted


async def test_frequencies_follow_inserts_replacements_contexts_and_deletions(
    engine: AsyncEngine,
) -> None:
    index = await LexicalIndex.open(engine)
    await index.write(
        "TA",
        upserts=[
            (message("TA", "1.000001", "Deploys freeze on Fridays"), ""),
            (message("TA", "2.000001", "The billing deploy failed"), "freeze window"),
            (message("TA", "3.000001", "Lunch on Friday?", channel="C2"), ""),
        ],
    )
    await index.write("TB", upserts=[(message("TB", "1.000001", "billing billing owner"), "")])
    kept, counted = await frequencies(engine)
    assert kept == counted
    assert ("TA", "deploy", 2) in kept and ("TA", "freez", 2) in kept
    assert ("TB", "bill", 1) in kept  # a word twice in one message counts once

    await index.write(
        "TA",
        upserts=[(message("TA", "1.000001", "Deploys are fine any day now"), "")],
        contexts=[(("C1", "2.000001"), "")],
    )
    kept, counted = await frequencies(engine)
    assert kept == counted
    assert ("TA", "freez", 2) not in kept and not any(k[:2] == ("TA", "freez") for k in kept)

    await index.write("TA", deletes=[("C1", "2.000001"), ("C2", "3.000001")])
    kept, counted = await frequencies(engine)
    assert kept == counted and ("TA", "deploy", 1) in kept

    await index.delete_team("TA")
    kept, counted = await frequencies(engine)
    assert kept == counted and {k[0] for k in kept} == {"TB"}


async def test_rare_words_outrank_common_ones_with_kept_frequencies(engine: AsyncEngine) -> None:
    index = await LexicalIndex.open(engine)
    common = [(message("TA", f"{i}.000001", f"status update number {i}"), "") for i in range(1, 30)]
    rare = (message("TA", "100.000001", "status of the zeppelin project"), "")
    await index.write("TA", upserts=[*common, rare])
    found = await index.search(
        "TA",
        "zeppelin status update",
        audience=Audience.everyone(),
        filters=SearchFilters(),
        limit=3,
    )
    assert found[0] == ("C1", "100.000001")  # the rare word carries the ranking


async def test_an_index_made_before_kept_frequencies_counts_its_rows_when_opened(
    engine: AsyncEngine,
) -> None:
    index = await LexicalIndex.open(engine)
    await index.write("TA", upserts=[(message("TA", "1.000001", "Old rows stay countable"), "")])
    async with engine.begin() as connection:  # back to the tables as they were before
        for operation in ("insert", "update", "delete"):
            await connection.execute(text(f"DROP TRIGGER {TERMS}_{operation} ON {TABLE}"))
        await connection.execute(text(f"DROP TABLE {TERMS}"))
        await connection.execute(
            text(
                f"INSERT INTO {TABLE} (team_id, channel_id, ts, ts_num, thread_key, "
                "channel_type, is_bot, text, context, scope) VALUES ('TA', 'C1', '2.000001', "
                "2.000001, '2.000001', 'channel', false, 'More old rows', '', '')"
            )
        )
    reopened = await LexicalIndex.open(engine)
    kept, counted = await frequencies(engine)
    assert kept == counted and ("TA", "row", 2) in kept
    await reopened.write("TA", upserts=[(message("TA", "3.000001", "new rows too"), "")])
    kept, counted = await frequencies(engine)
    assert kept == counted and ("TA", "row", 3) in kept


async def test_lores_postgresql_connections_plan_each_statement_for_its_parameters() -> None:
    """The search's statements are planned for their terms, never with a generic plan, and
    reads run outside a transaction while writes still run in one."""
    engine = await postgres_engine_or_skip()
    try:
        index = LexicalIndex(engine)
        async with index._reads.connect() as connection:
            mode = (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one()
            reads_in_one = await one_transaction(connection)
        async with engine.begin() as connection:
            writes_in_one = await one_transaction(connection)
        assert mode == "force_custom_plan"
        assert not reads_in_one and writes_in_one
    finally:
        await engine.dispose()
