"""SQLite connections for SQLAlchemy's async engine that cost one thread hop per statement.

aiosqlite runs every sqlite3 call on the connection's own thread, one hand-off each: under
SQLAlchemy a statement is five (open a cursor, execute, fetch, close the cursor, and the pool's
rollback when the connection is returned), and each hand-off is a queue put and a wake-up of
the event loop. `HopConnection` is aiosqlite's connection with cursors that execute, fetch
every row and close in one hand-off, and with commit and rollback skipped when no transaction
is open (after reads). SQLAlchemy sees an aiosqlite connection; the SQL is the same.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Self

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url

Row = tuple[Any, ...]
Outcome = tuple[Any, int, int | None, list[Row]]
"""What a statement leaves behind: description, rowcount, lastrowid and every row."""


class HopCursor:
    """A cursor whose statements run, fetch and close in one hand-off; it keeps the rows."""

    def __init__(self, connection: HopConnection) -> None:
        self._connection = connection
        self._rows: list[Row] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Self:
        self._keep(await self._connection.run(sql, parameters or (), many=False))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Self:
        self._keep(await self._connection.run(sql, parameters, many=True))
        return self

    def _keep(self, outcome: Outcome) -> None:
        self.description, self.rowcount, self.lastrowid, self._rows = outcome

    async def fetchall(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    async def close(self) -> None:
        self._rows = []


class HopConnection(aiosqlite.Connection):
    """aiosqlite's connection with `HopCursor`s; no hand-off ends a transaction never begun."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True
        self._in_transaction = False

    def cursor(self) -> HopCursor:  # type: ignore[override]
        return HopCursor(self)

    async def run(self, sql: str, parameters: Any, *, many: bool) -> Outcome:
        """Execute one statement on the connection's thread and bring back all it returned."""
        return await self._execute(self._statement, sql, parameters, many)

    def _statement(self, sql: str, parameters: Any, many: bool) -> Outcome:
        cursor = self._conn.cursor()
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            rows = cursor.fetchall() if cursor.description else []
            return cursor.description, cursor.rowcount, cursor.lastrowid, rows
        finally:
            cursor.close()
            self._in_transaction = self._conn.in_transaction

    def _end(self, end: Callable[[], None]) -> None:
        try:
            end()
        finally:
            self._in_transaction = self._conn.in_transaction

    async def commit(self) -> None:
        if self._in_transaction:
            await self._execute(self._end, self._conn.commit)

    async def rollback(self) -> None:
        if self._in_transaction:
            await self._execute(self._end, self._conn.rollback)


def connector(url: str) -> Callable[[], Awaitable[HopConnection]]:
    """The `async_creator` of an engine on `url`: the database and options SQLAlchemy would use."""
    (database,), options = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))

    def open_database() -> sqlite3.Connection:
        return sqlite3.connect(database, **options)

    async def connect() -> HopConnection:
        connection = HopConnection(open_database)
        await connection
        return connection

    return connect
