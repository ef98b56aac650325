"""Once-only keys with a time to live: the first claim of a key wins, later claims lose."""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis


class OnceKeys(Protocol):
    async def claim(self, key: str) -> bool:
        """True the first time `key` is claimed within the TTL, False afterwards."""
        ...  # pragma: no cover - protocol

    async def delete_team(self, team_id: str) -> None:
        """Forget the claims naming the workspace (keys hold the team as a `:` part)."""
        ...  # pragma: no cover - protocol


class LocalOnceKeys:
    """In-process claims; expired keys are swept as new ones arrive."""

    def __init__(self, ttl: float = 3600.0) -> None:
        self._ttl = ttl
        self._expiry: dict[str, float] = {}
        self._next_sweep = 0.0

    async def claim(self, key: str) -> bool:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            self._next_sweep = now + min(self._ttl, 60.0)
        if self._expiry.get(key, 0.0) > now:
            return False
        self._expiry[key] = now + self._ttl
        return True

    async def delete_team(self, team_id: str) -> None:
        """Forget the claims naming the workspace (keys hold the team as a `:` part)."""
        self._expiry = {k: t for k, t in self._expiry.items() if team_id not in k.split(":")}


class RedisOnceKeys:
    """Claims shared by every process: Redis `SET key 1 NX EX ttl`."""

    def __init__(self, redis: Redis, ttl: int = 3600, prefix: str = "lore:once:") -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix

    async def claim(self, key: str) -> bool:
        return bool(await self._redis.set(self._prefix + key, b"1", nx=True, ex=self._ttl))

    async def delete_team(self, team_id: str) -> None:
        """Nothing of its own: the keys go with the workspace's other Redis keys
        (`memory.redis_keys.RedisTeamKeys`)."""
