"""The SQL engine a benchmark writes to: Lore's own (`make_engine`), optionally on a PostgreSQL
schema of the benchmark's own, so its tables never mix with other users of the database."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.db import make_engine

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def bench_engine(url: str, schema: str | None = None) -> AsyncEngine:
    """Lore's engine for url; with schema (PostgreSQL only), every connection works in it."""
    engine = make_engine(url)
    if schema is None:
        return engine
    if engine.dialect.name != "postgresql" or not _NAME.fullmatch(schema):
        raise ValueError(f"a schema needs PostgreSQL and a plain lower-case name, not {schema!r}")

    def use_schema(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a SET outside a transaction lasts for the session
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET search_path TO {schema}")
        cursor.close()
        dbapi_connection.autocommit = autocommit

    event.listen(engine.sync_engine, "connect", use_schema)
    return engine


async def create_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))


async def drop_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
