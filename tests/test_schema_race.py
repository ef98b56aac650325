"""Processes started together on an empty PostgreSQL database all create Lore's schema: none
fails on another's half-made `CREATE TABLE`."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from app.oauth import Installations
from memory.channel_kinds import ChannelKinds
from memory.db import create_tables
from memory.lexical import TABLE, TERMS, LexicalIndex
from tests.conftest import postgres_schema

STARTERS = 6


async def start(engine: AsyncEngine) -> None:
    """What a starting process does to the schema."""
    await create_tables(engine)
    await LexicalIndex.open(engine)
    await ChannelKinds.open(engine)
    await Installations(engine, "client").create_tables()


async def test_processes_starting_together_on_a_fresh_schema_all_create_it() -> None:
    async with postgres_schema("race_") as engine:
        results = await asyncio.gather(
            *(start(engine) for _ in range(STARTERS)), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        async with engine.connect() as connection:
            tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"memory_block_versions", "conversations", TABLE, TERMS} <= tables
        assert {"slack_installations", "slack_oauth_states", "archive_channel_kinds"} <= tables
