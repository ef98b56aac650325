"""Once-only keys with a time to live: the first claim of a key wins, later claims lose.

A claim is pending until `settle` says its delivery was handed on. A retry of a delivery
(Slack sends one only when no attempt was acknowledged) takes over a claim still pending: the
attempt that made it failed, perhaps after its claim was stored but before Lore heard so.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from redis.asyncio import Redis


class OnceKeys(Protocol):
    async def claim(self, key: str, retry: bool = False) -> bool:
        """True the first time `key` is claimed within the TTL, False afterwards; a `retry`
        also wins a claim still pending."""
        ...  # pragma: no cover - protocol

    async def settle(self, key: str) -> None:
        """The delivery that claimed `key` was handed on: no retry takes its claim over."""
        ...  # pragma: no cover - protocol

    async def delete_team(self, team_id: str) -> None:
        """Forget the claims naming the workspace (keys hold the team as a `:` part)."""
        ...  # pragma: no cover - protocol


class LocalOnceKeys:
    """In-process claims; expired keys are swept as new ones arrive."""

    def __init__(self, ttl: float = 3600.0) -> None:
        self._ttl = ttl
        self._expiry: dict[str, float] = {}
        self._pending: set[str] = set()
        self._next_sweep = 0.0

    async def claim(self, key: str, retry: bool = False) -> bool:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            self._pending &= self._expiry.keys()
            self._next_sweep = now + min(self._ttl, 60.0)
        if self._expiry.get(key, 0.0) > now and not (retry and key in self._pending):
            return False
        self._expiry[key] = now + self._ttl
        self._pending.add(key)
        return True

    async def settle(self, key: str) -> None:
        self._pending.discard(key)

    async def delete_team(self, team_id: str) -> None:
        """Forget the claims naming the workspace (keys hold the team as a `:` part)."""
        self._expiry = {k: t for k, t in self._expiry.items() if team_id not in k.split(":")}
        self._pending &= self._expiry.keys()


_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[3] then return 1 end
if held and not (ARGV[2] == '1' and string.sub(held, 1, 8) == 'pending:') then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[1])
return 1
"""


class RedisOnceKeys:
    """Claims shared by every process: `pending:<attempt>` until settled to `done`. A claim
    sent again by the client after a lost reply finds its own attempt and still wins."""

    def __init__(self, redis: Redis, ttl: int = 3600, prefix: str = "lore:once:") -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, key: str, retry: bool = False) -> bool:
        attempt = b"pending:" + secrets.token_hex(8).encode()
        won = await self._claim(keys=[self._prefix + key], args=[self._ttl, int(retry), attempt])
        return bool(won)

    async def settle(self, key: str) -> None:
        await self._redis.set(self._prefix + key, b"done", xx=True, ex=self._ttl)

    async def delete_team(self, team_id: str) -> None:
        """Nothing of its own: the keys go with the workspace's other Redis keys
        (`memory.redis_keys.RedisTeamKeys`)."""
