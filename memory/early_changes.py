"""The newest change of each message, by Slack's order, so changes apply in that order whatever
order they arrive or are replayed in, and an edit or deletion that arrives before its message is
stored is found by the message's batch.

Slack may deliver a message's edits and deletion in any order (each event is its own request,
retried on its own), and a process that dies leaves them to be replayed by another in the order
they arrived. Every change is kept here first, ranked by its event's `event_ts` (a deletion ranks
above every edit: nothing follows it in Slack); the change that is applied is always the newest
kept, so an older one arriving late applies the newer one again. `LocalEarlyChanges` keeps them
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
RANK_CHARS = 20


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


def _change(value: bytes) -> Change:
    """The change a kept value holds (its rank, then "D", or "T" and the text)."""
    body = value[RANK_CHARS:]
    return None if body == b"D" else body[1:].decode()
