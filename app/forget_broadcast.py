"""Forgetting a workspace across processes: every Lore sharing one Redis stops its work first.

The process that forgets a workspace publishes `halt` on the Redis channel `lore:forget`; every
subscribed process (itself included) cancels the workspace's turns and backfills, drops what it
caches of it, takes none of its work from then on, and answers on a reply list named by a random
nonce. The forgetting process waits for as many answers as PUBLISH reached subscribers (at most
`ACK_SECONDS`), deletes the data, then publishes `resume`. A process that never hears `resume`
(its publisher died) resumes by itself after `HALT_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger("lore.forget")

CHANNEL = "lore:forget"
REPLY_PREFIX = "lore:forget-done:"
ACK_SECONDS = 30.0
HALT_SECONDS = 300.0

OnHalt = Callable[[str], Awaitable[None]]
OnResume = Callable[[str], None]


class ForgetBroadcast:
    """One process's end of the `lore:forget` channel."""

    def __init__(
        self,
        redis: Redis,
        on_halt: OnHalt,
        on_resume: OnResume,
        ack_seconds: float = ACK_SECONDS,
        halt_seconds: float = HALT_SECONDS,
    ) -> None:
        self._redis = redis
        self._on_halt = on_halt
        self._on_resume = on_resume
        self._ack_seconds = ack_seconds
        self._halt_seconds = halt_seconds
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self._halting: set[str] = set()
        self._resumed_while_halting: set[str] = set()

    async def start(self) -> None:
        """Subscribe; from now on this process hears every workspace being forgotten. With
        Redis unreachable it keeps trying in the background (start-up goes on)."""
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(CHANNEL)
        except (RedisError, OSError) as error:
            log.warning("cannot hear forgotten workspaces yet (%s); retrying", error)
        self._listener = asyncio.create_task(self._listen(self._pubsub), name="forget-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for task in list(self._handling):
            task.cancel()
        await asyncio.gather(*self._handling, return_exceptions=True)
        for handle in self._expiries.values():
            handle.cancel()
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    async def halt_everywhere(self, team_id: str) -> tuple[int, int]:
        """Ask every process to stop the workspace's work; (processes asked, answered)."""
        reply = REPLY_PREFIX + secrets.token_hex(16)
        message = json.dumps({"op": "halt", "team": team_id, "reply": reply})
        asked = int(await self._redis.publish(CHANNEL, message))
        answered = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_seconds
        try:
            while answered < asked and (left := deadline - loop.time()) > 0:
                if await self._redis.blpop([reply], timeout=max(1, int(left))) is not None:
                    answered += 1
        finally:
            await self._redis.delete(reply)
        if answered < asked:
            log.warning(
                "%d of %d processes stopped the work of %s in time; deleting it anyway",
                answered,
                asked,
                team_id,
            )
        return asked, answered

    async def resume_everywhere(self, team_id: str) -> None:
        await self._redis.publish(CHANNEL, json.dumps({"op": "resume", "team": team_id}))

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(CHANNEL)
                message = await pubsub.get_message(timeout=None)
            except (RedisError, OSError) as error:
                log.warning("lost the forget channel (%s); listening again in 1 s", error)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                order = json.loads(message["data"])
                op, team_id = order["op"], str(order["team"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed message on %s", CHANNEL)
                continue
            if op == "halt":
                task = asyncio.create_task(self._halt(team_id, str(order.get("reply", ""))))
                self._handling.add(task)
                task.add_done_callback(self._handling.discard)
            elif op == "resume":
                self._resume(team_id)

    async def _halt(self, team_id: str, reply: str) -> None:
        self._halting.add(team_id)
        self._resumed_while_halting.discard(team_id)
        try:
            await self._on_halt(team_id)
        except Exception:
            log.exception("could not stop the work of %s here", team_id)
        finally:
            self._halting.discard(team_id)
        previous = self._expiries.pop(team_id, None)
        if previous is not None:
            previous.cancel()
        if team_id in self._resumed_while_halting:  # its publisher stopped waiting for us
            self._resumed_while_halting.discard(team_id)
            self._on_resume(team_id)
        else:
            self._expiries[team_id] = asyncio.get_running_loop().call_later(
                self._halt_seconds, self._resume, team_id
            )
        if reply.startswith(REPLY_PREFIX):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(reply, b"1")
                pipe.expire(reply, int(self._ack_seconds) + 5)
                await pipe.execute()

    def _resume(self, team_id: str) -> None:
        if team_id in self._halting:  # resumed once the halt has finished
            self._resumed_while_halting.add(team_id)
            return
        handle = self._expiries.pop(team_id, None)
        if handle is not None:
            handle.cancel()
        self._on_resume(team_id)
