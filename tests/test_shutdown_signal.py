"""SIGTERM to `python -m app serve` takes the graceful path: turns left when the grace runs out
(or when a second signal cuts it short) are handed back in their threads, and the process
exits cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from app.turns import HandBack
from emulator import SlackEmulator
from handlers.messages import HAND_BACK_TEXT
from tests.conftest import ROOT
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import eventually, serve_env, wait_ready

BOT = "<@U0LORE>"


async def stopped_listening(url: str) -> None:
    """Wait until Lore's HTTP server refuses connections (it stops taking events first thing
    on the first signal, after arming the second signal's handler)."""

    async def refused() -> bool:
        # a connection the dying server accepted but no longer serves times out: ask again,
        # since only a refused connection shows that the listening socket is closed
        probe = aiohttp.ClientTimeout(total=2)
        try:
            async with (
                aiohttp.ClientSession(timeout=probe) as session,
                session.get(f"{url}/healthz"),
            ):
                return False
        except TimeoutError:
            return False
        except aiohttp.ClientError:
            return True

    await eventually(refused, 30)


async def stop_with_turns_held(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path, grace: str, signals: int
) -> None:
    """Start Lore, leave one turn running (the model holds its answer) and one queued, send
    `signals` SIGTERMs a moment apart; both turns must be handed back and Lore exit with 0."""
    release = asyncio.Event()

    async def respond(_request: dict[str, Any]) -> Any:
        await release.wait()
        return reply(text("Answered."))

    fake_llm.respond_with(respond)
    env = serve_env(
        emulator,
        fake_llm,
        tmp_path / "lore",
        LORE_MODEL_RETRIES="0",
        LORE_MAX_CONCURRENT_TURNS="1",
        LORE_SHUTDOWN_GRACE=grace,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT, env=env
    )
    try:
        url = f"http://127.0.0.1:{env['PORT']}"
        await wait_ready(url, process)
        emulator.config.events_url = f"{url}/slack/events"
        running = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} first question")
        await fake_llm.wait_for_requests(1, timeout=30)
        queued = await emulator.post_message("U0BOB", "C0GENERAL", f"{BOT} second question")
        await emulator.drain()
        for _ in range(signals):
            process.send_signal(signal.SIGTERM)
            await stopped_listening(url)  # the signal was taken: the next one is a second
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        release.set()
        if process.returncode is None:
            process.kill()
            await process.wait()
    restarting = HAND_BACK_TEXT[HandBack.RESTARTING]
    for asked in (running, queued):
        replies = emulator.bot_replies("C0GENERAL", asked["ts"])
        assert [message["text"] for message in replies] == [restarting]
    assert len(fake_llm.requests) == 1


async def test_sigterm_hands_back_turns_left_after_the_grace(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    await stop_with_turns_held(team_emulator, fake_llm, tmp_path, grace="1", signals=1)


async def test_a_second_sigterm_hands_back_at_once_without_waiting_for_the_grace(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    # a grace of 10 minutes: Lore exits within the test's 30 s only because of the second signal
    await stop_with_turns_held(team_emulator, fake_llm, tmp_path, grace="600", signals=2)
