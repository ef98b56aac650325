"""Two Lore processes sharing Redis and PostgreSQL behind one event stream."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emulator import EmulatorConfig, SlackEmulator
from memory.blocks import MemoryBlocks
from memory.locks import LocalLocks
from tests.conftest import (
    MODEL_DIR,
    POSTGRES_URL,
    REDIS_URL,
    ROOT,
    new_team,
    postgres_engine_or_skip,
)
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import user_text

BOT = "<@U0LORE>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            assert process.returncode is None, f"Lore exited with {process.returncode}"
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} never became ready")


@pytest.fixture
async def team_emulator() -> AsyncIterator[SlackEmulator]:
    emu = SlackEmulator(EmulatorConfig(events_url=None, team_id=new_team()))
    await emu.start()
    yield emu
    await emu.stop()


async def test_two_processes_answer_once_and_lose_no_edit(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    engine = await postgres_engine_or_skip()
    emulator = team_emulator
    team = emulator.config.team_id

    def respond(request: dict[str, Any]) -> Any:
        last = request["messages"][-1]["content"]
        if isinstance(last, list) and last[0].get("type") == "tool_result":
            return reply(text("Saved."))
        number = re.search(r"fact number (\d+)", user_text(request))
        assert number
        return reply(tool_use("memory_insert", {"label": "org", "text": f"Fact {number[1]}"}))

    fake_llm.respond_with(respond)
    urls: list[str] = []
    processes: list[asyncio.subprocess.Process] = []
    try:
        for n in range(2):
            port = free_port()
            env = {
                **os.environ,
                "PORT": str(port),
                "LORE_HOST": "127.0.0.1",
                "LORE_DATA_DIR": str(tmp_path / f"lore{n}"),
                "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
                "DATABASE_URL": POSTGRES_URL,
                "REDIS_URL": REDIS_URL,
                "SLACK_BOT_TOKEN": emulator.config.bot_token,
                "SLACK_SIGNING_SECRET": emulator.config.signing_secret,
                "SLACK_API_URL": emulator.api_url,
                "ANTHROPIC_API_KEY": "test-key",
                "ANTHROPIC_BASE_URL": fake_llm.base_url,
                "LORE_LOG_LEVEL": "WARNING",
            }
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "app", "serve", cwd=ROOT, env=env
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            await wait_ready(url, process)

        chooser = random.Random(7)
        posts = []
        for n in range(40):
            posted = await emulator.post_message(
                "U0ALICE", "C0GENERAL", f"{BOT} learn fact number {n}", deliver=False
            )
            posts.append(posted)
            event = {
                "type": "app_mention",
                "user": "U0ALICE",
                "text": f"{BOT} learn fact number {n}",
                "ts": posted["ts"],
                "channel": "C0GENERAL",
                "event_ts": posted["ts"],
            }
            targets = chooser.choice([[0], [1], [0, 1], [1, 0]])
            for target in targets:
                emulator.config.events_url = f"{urls[target]}/slack/events"
                event_id = f"Ev{team}{n:04d}"
                assert await emulator.deliver_event(event, event_id=event_id) == 200
        for posted in posts:
            await emulator.wait_for_reply("C0GENERAL", posted["ts"], timeout=60)
        await asyncio.sleep(1.0)
        for posted in posts:
            bot_messages = [
                m for m in emulator.thread("C0GENERAL", posted["ts"]) if m.get("bot_id")
            ]
            assert len(bot_messages) == 1, posted["ts"]
        blocks = MemoryBlocks(engine, LocalLocks())
        history = await blocks.history(team, "org")
        assert [b.version for b in history] == list(range(1, 42))
        assert sorted(history[-1].value.splitlines()) == sorted(f"Fact {n}" for n in range(40))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), timeout=60)
        await engine.dispose()
