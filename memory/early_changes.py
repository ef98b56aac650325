"""Edits and deletions that arrive before their message is archived, kept until it is.

Slack may deliver a `message_changed` or `message_deleted` event before the message itself is
stored: its batch is still waiting, or another Lore process received the message. The change
is kept here, by message, and taken when the message is stored. `LocalEarlyChanges` keeps them
in this process; `RedisEarlyChanges` in Redis, shared by every process, each for a day.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("lore.early_changes")

MessageId = tuple[str, str, str]
"""(team, channel, ts)"""

Change = str | None
"""The message's new text, or None: deleted."""

MAX_LOCAL = 10_000
TTL_SECONDS = 24 * 3600


class EarlyChangesUnknown(Exception):
    """The kept changes could not be looked at (their store is away): ask again later."""


class EarlyChanges(Protocol):
    async def keep(self, message: MessageId, change: Change) -> None:
        """Remember the newest change of a message not archived yet."""
        ...  # pragma: no cover - protocol

    async def take(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        """The changes kept for these messages, forgotten as they are returned; raises
        `EarlyChangesUnknown` when they cannot be looked at now."""
        ...  # pragma: no cover - protocol

    def forget_team(self, team_id: str) -> None:
        """Drop what this process keeps of the workspace (it is being forgotten)."""
        ...  # pragma: no cover - protocol


class LocalEarlyChanges:
    """In this process: the newest `MAX_LOCAL` changes."""

    def __init__(self, limit: int = MAX_LOCAL) -> None:
        self._limit = limit
        self._changes: OrderedDict[MessageId, Change] = OrderedDict()

    async def keep(self, message: MessageId, change: Change) -> None:
        self._changes[message] = change
        self._changes.move_to_end(message)
        while len(self._changes) > self._limit:
            self._changes.popitem(last=False)

    async def take(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        return {m: self._changes.pop(m) for m in messages if m in self._changes}

    def forget_team(self, team_id: str) -> None:
        """Drop every change kept for the workspace (it is being forgotten)."""
        for message in [m for m in self._changes if m[0] == team_id]:
            del self._changes[message]


class RedisEarlyChanges:
    """In Redis, one key per message (`GETDEL` takes it once, whichever process asks first).

    A failed `take` is logged and raises `EarlyChangesUnknown`: the caller stores its batch
    anyway and looks again later (the changes stay in Redis for a day)."""

    def __init__(
        self, redis: Redis, ttl: int = TTL_SECONDS, prefix: str = "lore:early-change:"
    ) -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix

    def _key(self, message: MessageId) -> str:
        return self._prefix + ":".join(message)

    def forget_team(self, team_id: str) -> None:
        """Nothing kept in this process: the keys (which name the team) are deleted with the
        workspace's other Redis keys (`memory.redis_keys`)."""

    async def keep(self, message: MessageId, change: Change) -> None:
        value = b"D" if change is None else b"T" + change.encode()
        await self._redis.set(self._key(message), value, ex=self._ttl)

    async def take(self, messages: Sequence[MessageId]) -> dict[MessageId, Change]:
        if not messages:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.getdel(self._key(message))
                values: list[bytes | None] = await pipe.execute()
        except RedisError as error:
            log.warning("could not look for early edits of %d messages: %s", len(messages), error)
            raise EarlyChangesUnknown(str(error)) from error
        return {
            message: None if value == b"D" else value[1:].decode()
            for message, value in zip(messages, values, strict=True)
            if value is not None
        }
