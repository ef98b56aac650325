"""The newest change of each message, by Slack's order, so changes apply in that order whatever
order they arrive or are replayed in, and an edit or deletion that arrives before its message is
stored is found by the message's batch.

Slack may deliver a message's edits and deletion in any order (each event is its own request,
retried on its own), and a process that dies leaves them to be replayed by another in the order
they arrived. Every change is kept here first, ranked by its event's `event_ts` (a deletion ranks
above every edit: nothing follows it in Slack); the change that is applied is always the newest
kept, so an older one arriving late applies the newer one again. `RedisEarlyChanges` keeps them
in Redis, shared by every process, each for a day; `SqlEarlyChanges` in the SQL store, for a
day too, where there is no Redis: a change that overtook its message survives the process, so
a restart that archives the message from the intake still applies it. `LocalEarlyChanges`
keeps them in memory (for tests and tools).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import (
    ColumnElement,
    Float,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from memory.db import Base

log = logging.getLogger("lore.early_changes")

MessageId = tuple[str, str, str]
"""(team, channel, ts)"""

Change = str | None
"""The message's new text, or None: deleted."""

MAX_LOCAL = 10_000
TTL_SECONDS = 24 * 3600
RANK_CHARS = 20
PURGE_EVERY = 100  # keeps between deletions of expired rows (SqlEarlyChanges)
LOOKUP_CHUNK = 100  # messages looked up in one statement (SqlEarlyChanges)


def rank(change: Change, version: str) -> str:
    """A fixed-width key that sorts as Slack orders changes: deletions last, then by the
    event's `event_ts` ("seconds.micros"; "" for a change with no event, the oldest edit)."""
    seconds, _, fraction = version.partition(".")
    if not (seconds.isdigit() and (fraction.isdigit() or not fraction)):
        seconds, fraction = "0", ""
    return f"{int(change is None)}{int(seconds):012d}.{fraction[:6].ljust(6, '0')}"


class EarlyChangesUnknown(Exception):
    """The kept changes could not be looked at (their store is away): ask again later."""


class EarlyChanges(Protocol):
    async def keep(self, message: MessageId, change: Change, version: str = "") -> Change:
        """Remember a change of a message unless a newer one is kept; the newest kept."""
        ...  # pragma: no cover - protocol

    async def newest(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        """The newest change kept for each of these messages that has one; raises
        `EarlyChangesUnknown` when they cannot be looked at now."""
        ...  # pragma: no cover - protocol

    def forget_team(self, team_id: str) -> None:
        """Drop what this process keeps of the workspace (it is being forgotten)."""
        ...  # pragma: no cover - protocol


class LocalEarlyChanges:
    """In this process: the changes of the `MAX_LOCAL` messages changed last."""

    def __init__(self, limit: int = MAX_LOCAL) -> None:
        self._limit = limit
        self._changes: OrderedDict[MessageId, tuple[str, Change]] = OrderedDict()

    async def keep(self, message: MessageId, change: Change, version: str = "") -> Change:
        ranked = rank(change, version)
        kept = self._changes.get(message)
        if kept is None or kept[0] <= ranked:
            kept = (ranked, change)
        self._changes[message] = kept
        self._changes.move_to_end(message)
        while len(self._changes) > self._limit:
            self._changes.popitem(last=False)
        return kept[1]

    async def newest(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        return {m: self._changes[m][1] for m in messages if m in self._changes}

    def forget_team(self, team_id: str) -> None:
        """Drop every change kept for the workspace (it is being forgotten)."""
        for message in [m for m in self._changes if m[0] == team_id]:
            del self._changes[message]


KEEP_NEWEST = """
local kept = redis.call('GET', KEYS[1])
if kept and string.sub(kept, 1, ARGV[3]) > string.sub(ARGV[1], 1, ARGV[3]) then
  return kept
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


class RedisEarlyChanges:
    """In Redis, one key per message: its newest change after its rank, compared and set in
    one script, so concurrent processes keep the newest whatever order they run in.

    A failed `newest` is logged and raises `EarlyChangesUnknown`: a batch is stored anyway and
    looked at again later (the changes stay in Redis for a day). A failed `keep` raises: the
    change is tried again (`app.retry`) rather than applied out of order."""

    def __init__(
        self, redis: Redis, ttl: int = TTL_SECONDS, prefix: str = "lore:early-change:"
    ) -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix
        self._keep_newest = redis.register_script(KEEP_NEWEST)

    def _key(self, message: MessageId) -> str:
        return self._prefix + ":".join(message)

    def forget_team(self, team_id: str) -> None:
        """Nothing kept in this process: the keys (which name the team) are deleted with the
        workspace's other Redis keys (`memory.redis_keys`)."""

    async def keep(self, message: MessageId, change: Change, version: str = "") -> Change:
        value = rank(change, version) + ("D" if change is None else "T" + change)
        kept = await self._keep_newest(
            keys=[self._key(message)], args=[value.encode(), self._ttl, RANK_CHARS]
        )
        return _change(kept)

    async def newest(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        if not messages:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.get(self._key(message))
                values: list[bytes | None] = await pipe.execute()
        except RedisError as error:
            log.warning("could not look for early edits of %d messages: %s", len(messages), error)
            raise EarlyChangesUnknown(str(error)) from error
        return {
            message: _change(value)
            for message, value in zip(messages, values, strict=True)
            if value is not None
        }


class EarlyChangeRow(Base):
    """A message's newest change (`SqlEarlyChanges`): its rank, then "D" or "T" and the text."""

    __tablename__ = "early_changes"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ts: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class SqlEarlyChanges:
    """In the SQL store (`early_changes`), one row per message: the newest change, compared and
    set in one statement (an upsert that replaces only an older rank), kept `ttl` seconds.

    For the one process that archives without Redis: it reads which messages have a row once,
    then keeps that set itself, so a batch whose messages have no change (nearly every one)
    costs no statement. A failed `newest` raises `EarlyChangesUnknown` (the batch is looked at
    again later); a failed `keep` raises, so the change is tried again rather than applied out
    of order."""

    def __init__(self, engine: AsyncEngine, ttl: int = TTL_SECONDS) -> None:
        self._engine = engine
        self._ttl = ttl
        self._postgres = engine.dialect.name == "postgresql"
        self._keeps = 0
        self._known: set[MessageId] | None = None

    def forget_team(self, team_id: str) -> None:
        """Nothing kept in this process: the rows go with the workspace (`delete_team`)."""

    async def delete_team(self, team_id: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(delete(_early).where(_early.c.team_id == team_id))
        if self._known is not None:
            self._known = {m for m in self._known if m[0] != team_id}

    async def _with_rows(self) -> set[MessageId]:
        """The messages with a row (read once, then kept up to date by `keep`)."""
        if self._known is None:
            query = select(_early.c.team_id, _early.c.channel_id, _early.c.ts)
            async with self._engine.connect() as connection:
                rows = await connection.execute(query.where(_early.c.expires_at >= time.time()))
                self._known = {(t, c, ts) for t, c, ts in rows}
        return self._known

    async def keep(self, message: MessageId, change: Change, version: str = "") -> Change:
        team_id, channel_id, ts = message
        value = rank(change, version) + ("D" if change is None else "T" + change)
        now = time.time()
        insert = (postgresql.insert if self._postgres else sqlite.insert)(_early)
        statement = insert.values(
            team_id=team_id, channel_id=channel_id, ts=ts, value=value, expires_at=now + self._ttl
        ).on_conflict_do_update(
            index_elements=[_early.c.team_id, _early.c.channel_id, _early.c.ts],
            set_={"value": insert.excluded.value, "expires_at": insert.excluded.expires_at},
            where=or_(
                _early.c.expires_at < now,
                func.substr(_early.c.value, 1, RANK_CHARS)
                <= func.substr(insert.excluded.value, 1, RANK_CHARS),
            ),
        )
        known = await self._with_rows()
        async with self._engine.begin() as connection:
            await connection.execute(statement)
            kept = await connection.scalar(select(_early.c.value).where(_is(message)))
            known.add(message)
            self._keeps += 1
            if self._keeps % PURGE_EVERY == 0:
                await connection.execute(delete(_early).where(_early.c.expires_at < now))
        return _change(str(kept).encode())

    async def newest(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        found: dict[MessageId, Change] = {}
        now = time.time()
        columns = (_early.c.team_id, _early.c.channel_id, _early.c.ts, _early.c.value)
        try:
            known = await self._with_rows()
            messages = [m for m in messages if m in known]
            if not messages:
                return found
            async with self._engine.connect() as connection:
                for start in range(0, len(messages), LOOKUP_CHUNK):
                    chunk = messages[start : start + LOOKUP_CHUNK]
                    query = select(*columns).where(
                        or_(*(_is(m) for m in chunk)), _early.c.expires_at >= now
                    )
                    for t, c, ts, value in await connection.execute(query):
                        found[(t, c, ts)] = _change(value.encode())
        except (DBAPIError, OSError) as error:
            log.warning("could not look for early edits of %d messages: %s", len(messages), error)
            raise EarlyChangesUnknown(str(error)) from error
        return found


_early = cast(Table, EarlyChangeRow.__table__)


def _is(message: MessageId) -> ColumnElement[bool]:
    team_id, channel_id, ts = message
    return and_(_early.c.team_id == team_id, _early.c.channel_id == channel_id, _early.c.ts == ts)


def _change(value: bytes) -> Change:
    """The change a kept value holds (its rank, then "D", or "T" and the text)."""
    body = value[RANK_CHARS:]
    return None if body == b"D" else body[1:].decode()
