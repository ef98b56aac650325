"""A delivery's de-duplication claim stored by Redis whose reply is lost on the way back: the
delivery is still handled, once (its message archived, its question answered once)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator import SlackEmulator
from tests.chroma_server import free_port
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import eventually, serve_env
from tests.processes import RedisServer, lexical_rows, serving

CHANNEL = "C0GENERAL"
BOT = "<@U0LORE>"
CLAIM = b"lore:once:event:"


class ClaimReplyDropper:
    """A TCP proxy in front of Redis: once armed, the next command that claims an event is
    passed on, and its reply read from Redis and dropped with the client's connection."""

    def __init__(self, redis_port: int) -> None:
        self.port = free_port()
        self.dropped = 0
        self.armed = False
        self._redis_port = redis_port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connect(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_redis = await asyncio.open_connection("127.0.0.1", self._redis_port)
        swallow = asyncio.Event()

        async def forward() -> None:
            while chunk := await client.read(65536):
                to_redis.write(chunk)
                await to_redis.drain()
                if self.armed and CLAIM in chunk:
                    self.armed = False
                    swallow.set()
                    return

        async def back() -> None:
            while chunk := await upstream.read(65536):
                if swallow.is_set():  # the claim's reply: Redis applied it, the client never hears
                    self.dropped += 1
                    return
                to_client.write(chunk)
                await to_client.drain()

        try:
            await asyncio.gather(forward(), back())
        except OSError:
            pass
        finally:
            to_client.close()
            to_redis.close()


@pytest.fixture
async def dropper(tmp_path: Path) -> AsyncIterator[ClaimReplyDropper]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    proxy = ClaimReplyDropper(server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        server.stop()


async def test_a_claim_whose_reply_is_lost_still_lets_its_delivery_through_once(
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    dropper: ClaimReplyDropper,
    tmp_path: Path,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    fake_llm.respond_with(lambda _request: reply(text("Blue, as agreed.")))
    env = serve_env(emulator, fake_llm, data, REDIS_URL=dropper.url)
    async with serving(env) as process:
        emulator.config.events_url = f"http://127.0.0.1:{env['PORT']}/slack/events"
        dropper.armed = True
        fact, question = "the launch colour is blue", f"{BOT} what is the launch colour?"
        said = await emulator.post_message("U0ALICE", CHANNEL, fact)
        await emulator.drain()

        async def archived() -> bool:
            return lexical_rows(data, team, CHANNEL).get(said["ts"]) == fact

        await eventually(archived, within=60)
        assert dropper.dropped == 1

        dropper.armed = True
        asked = await emulator.post_message("U0BOB", CHANNEL, question)
        await emulator.wait_for_reply(CHANNEL, asked["ts"], timeout=60)
        await emulator.drain()
        assert dropper.dropped == 2
        process.send_signal(signal.SIGTERM)  # finishes every turn under way before it exits
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    answers = emulator.bot_replies(CHANNEL, asked["ts"], True)
    assert [a["text"] for a in answers] == ["Blue, as agreed."]
    assert lexical_rows(data, team, CHANNEL).get(asked["ts"]) == question
