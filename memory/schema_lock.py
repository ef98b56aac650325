"""One schema creator at a time: processes starting together on an empty PostgreSQL database
would otherwise race on `CREATE TABLE` (`IF NOT EXISTS` does not stop two creators)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMA_LOCK_KEY = 7266203010


async def lock_schema(connection: AsyncConnection) -> None:
    """Hold PostgreSQL's schema advisory lock until the connection's transaction ends
    (nothing on SQLite, whose writers already take turns)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})"))
