"""A workspace's Redis keys, found and deleted when it is forgotten.

Every key Lore writes starts with `lore:` and names its workspace as one `:`-separated part:
`lore:once:event:<team>:<event>`, `lore:once:message:<team>:…`, `lore:early-change:<team>:…`,
`lore:lock:memory:<team>`, `lore:lock:memory:token-refresh:<enterprise>:<team>`,
`lore:lock:turn:<team>:…`, `lore:lease:backfill:<team>`, `lore:intake:<team>:<process>` (message
events acknowledged and not yet archived). A key added later that follows the rule
is forgotten with no change here.
"""

from __future__ import annotations

from redis.asyncio import Redis

PREFIX = "lore:"
KEY_PREFIXES = (
    "lore:once:",
    "lore:early-change:",
    "lore:lock:memory:",
    "lore:lock:turn:",
    "lore:lease:",
    "lore:intake:",
)
"""The prefixes of the keys Lore writes (for tests and operators; deletion needs no list)."""

_GLOB_SPECIAL = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


def names_team(key: str, team_id: str) -> bool:
    """Whether a Lore key belongs to the workspace (names it as one of its parts)."""
    return key.startswith(PREFIX) and team_id in key.split(":")


class RedisTeamKeys:
    """Deletes every `lore:` key that names a workspace."""

    def __init__(self, redis: Redis, batch: int = 500) -> None:
        self._redis = redis
        self._batch = batch

    async def keys(self, team_id: str) -> list[str]:
        """The workspace's keys now (SCAN: never blocks Redis, as KEYS would)."""
        team = team_id.translate(_GLOB_SPECIAL)
        found: set[str] = set()
        for pattern in (f"{PREFIX}*:{team}:*", f"{PREFIX}*:{team}"):
            async for raw in self._redis.scan_iter(match=pattern, count=self._batch):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                if names_team(key, team_id):
                    found.add(key)
        return sorted(found)

    async def delete_team(self, team_id: str) -> None:
        keys = await self.keys(team_id)
        for start in range(0, len(keys), self._batch):
            await self._redis.unlink(*keys[start : start + self._batch])
