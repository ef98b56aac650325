"""Once-only keys with a time to live: the first claim of a key wins, later claims lose.

A claim is pending until `settle` says its delivery was handed on. A retry of a delivery after
an attempt that failed (not one that merely timed out: it may still be handed on) takes over a
claim that an earlier attempt of the same delivery left pending: that attempt failed, perhaps
after its claim was stored but before Lore heard so. A claim another delivery left pending (the
`app_mention` + `message` twin) is never taken over.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

from redis.asyncio import Redis


class OnceKeys(Protocol):
    async def claim(self, key: str, delivery: str = "", retry: bool = False) -> bool:
        """True the first time `key` is claimed within the TTL, False afterwards; a `retry` of
        `delivery` also wins a claim an earlier attempt of it left pending."""
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
        self._pending: dict[str, str] = {}
        self._next_sweep = 0.0

    async def claim(self, key: str, delivery: str = "", retry: bool = False) -> bool:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            self._pending = {k: d for k, d in self._pending.items() if k in self._expiry}
            self._next_sweep = now + min(self._ttl, 60.0)
        taken_over = retry and bool(delivery) and self._pending.get(key) == delivery
        if self._expiry.get(key, 0.0) > now and not taken_over:
            return False
        self._expiry[key] = now + self._ttl
        self._pending[key] = delivery
        return True

    async def settle(self, key: str) -> None:
        self._pending.pop(key, None)

    async def delete_team(self, team_id: str) -> None:
        """Forget the claims naming the workspace (keys hold the team as a `:` part)."""
        self._expiry = {k: t for k, t in self._expiry.items() if team_id not in k.split(":")}
        self._pending = {k: d for k, d in self._pending.items() if k in self._expiry}


_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[3] then return 1 end
local mine = ARGV[4]
if held and not (ARGV[2] == '1' and string.sub(held, 1, #mine) == mine) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[1])
return 1
"""


class RedisOnceKeys:
    """Claims shared by every process: `pending:<delivery>:<attempt>` until settled to `done`.
    A claim sent again by the client after a lost reply finds its own attempt and still wins."""

    def __init__(self, redis: Redis, ttl: int = 3600, prefix: str = "lore:once:") -> None:
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, key: str, delivery: str = "", retry: bool = False) -> bool:
        mine = f"pending:{delivery}:"
        attempt = mine + secrets.token_hex(8)
        retrying = int(retry and bool(delivery))
        won = await self._claim(
            keys=[self._prefix + key], args=[self._ttl, retrying, attempt, mine]
        )
        return bool(won)

    async def settle(self, key: str) -> None:
        await self._redis.set(self._prefix + key, b"done", xx=True, ex=self._ttl)

    async def delete_team(self, team_id: str) -> None:
        """Nothing of its own: the keys go with the workspace's other Redis keys
        (`memory.redis_keys.RedisTeamKeys`)."""
