"""Load shedding and graceful shutdown, end to end: the real Bolt app against the emulator and
the fake model server, whose answers wait until a test lets them go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.main import Lore
from app.turns import HandBack
from emulator import SlackEmulator
from handlers.messages import HAND_BACK_TEXT
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import eventually, lore_settings, settled, start_lore_on, user_text

BOT = "<@U0LORE>"
BUSY = HAND_BACK_TEXT[HandBack.BUSY]
RESTARTING = HAND_BACK_TEXT[HandBack.RESTARTING]

StartLore = Callable[..., Awaitable[Lore]]


@pytest.fixture
async def held_llm(fake_llm: FakeAnthropic) -> AsyncIterator[asyncio.Event]:
    """The fake model answers only once the returned event is set."""
    release = asyncio.Event()

    async def respond(_request: dict[str, Any]) -> Any:
        await release.wait()
        return reply(text("Answered."))

    fake_llm.respond_with(respond)
    yield release
    release.set()


@pytest.fixture
async def start(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> AsyncIterator[StartLore]:
    """Start Lore with some settings overridden; stopped at the end unless a test stopped it."""
    started: list[Lore] = []

    async def start_with(**overrides: Any) -> Lore:
        lore = await start_lore_on(emulator, lore_settings(tmp_path, fake_llm, **overrides))
        started.append(lore)
        return lore

    yield start_with
    for lore in started:
        if not lore.services.turns.closed:
            await lore.stop()


async def queued(lore: Lore, count: int) -> None:
    async def enough() -> bool:
        return lore.services.turns.queued("T0LORE") == count

    await eventually(enough)


def texts(emulator: SlackEmulator, channel: str, ts: str) -> list[str]:
    return [message["text"] for message in emulator.bot_replies(channel, ts)]


async def test_a_full_queue_answers_busy_and_runs_no_turn(
    start: StartLore,
    emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    held_llm: asyncio.Event,
) -> None:
    lore = await start(lore_max_concurrent_turns=1, lore_max_queued_turns=1)
    first = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} first question")
    await fake_llm.wait_for_requests(1, timeout=20)
    second = await emulator.post_message("U0BOB", "C0GENERAL", f"{BOT} second question")
    await queued(lore, 1)
    stranger = await emulator.post_message("U0BOB", "C0RANDOM", "a thread Lore is not in")
    await emulator.post_message("U0CAROL", "C0RANDOM", "a reply there", thread_ts=stranger["ts"])
    third = await emulator.post_message("U0CAROL", "C0GENERAL", f"{BOT} third question")
    await emulator.drain()
    busy = await emulator.wait_for_reply("C0GENERAL", third["ts"], timeout=20)
    assert busy[0]["text"] == BUSY
    assert busy[0]["thread_ts"] == third["ts"]
    held_llm.set()
    await emulator.wait_for_reply("C0GENERAL", first["ts"], timeout=20)
    await emulator.wait_for_reply("C0GENERAL", second["ts"], timeout=20)
    await settled(emulator, lore)
    assert texts(emulator, "C0GENERAL", third["ts"]) == [BUSY]
    assert texts(emulator, "C0RANDOM", stranger["ts"]) == []
    asked = [user_text(request) for request in fake_llm.requests]
    assert len(asked) == 2
    assert not any("third question" in question for question in asked)


async def test_shutdown_finishes_running_and_queued_turns_within_the_grace(
    start: StartLore,
    emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    held_llm: asyncio.Event,
) -> None:
    lore = await start(lore_max_concurrent_turns=1)
    first = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} first question")
    await fake_llm.wait_for_requests(1, timeout=20)
    second = await emulator.post_message("U0BOB", "C0GENERAL", f"{BOT} second question")
    await queued(lore, 1)
    stopping = asyncio.create_task(lore.stop())

    async def closed() -> bool:
        return lore.services.turns.closed

    await eventually(closed)
    held_llm.set()
    await stopping
    for asked in (first, second):
        assert texts(emulator, "C0GENERAL", asked["ts"]) == ["Answered."]


async def test_turns_left_when_the_grace_runs_out_are_handed_back(
    start: StartLore,
    emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    held_llm: asyncio.Event,
) -> None:
    lore = await start(lore_max_concurrent_turns=1, lore_shutdown_grace=0.5)
    running = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} first question")
    await fake_llm.wait_for_requests(1, timeout=20)
    waiting = [
        await emulator.post_message("U0BOB", "C0GENERAL", f"{BOT} second question"),
        await emulator.post_message("U0ALICE", "D0ALICE", "a direct question"),
    ]
    await queued(lore, 2)
    await lore.stop()
    assert texts(emulator, "C0GENERAL", running["ts"]) == [RESTARTING]
    assert texts(emulator, "C0GENERAL", waiting[0]["ts"]) == [RESTARTING]
    assert texts(emulator, "D0ALICE", waiting[1]["ts"]) == [RESTARTING]
    assert len(fake_llm.requests) == 1
