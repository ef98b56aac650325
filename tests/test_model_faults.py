"""Messages API faults with the production retry settings (the harness turns retries off).

A turn whose first step made a memory edit meets a fault in its next step: 429 with
`retry-after`, 529 overloaded, 500, a connection cut, a timeout. When a retry gets through, the
turn is answered; when every attempt fails, the asker gets one apology. Either way there is one
bot message, the edit is stored once and whole, and `lore_turns_total{outcome}` counts the turn.
A stream that breaks after some text was shown (an SSE `error` event, or the connection cut)
is not retried: that text stays and the apology is appended to the same message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app.main import Lore
from app.settings import Settings
from emulator import SlackEmulator
from memory.blocks import MemoryScope
from tests.fake_anthropic import (
    FakeAnthropic,
    Reply,
    ScriptItem,
    delay,
    disconnect,
    error,
    reply,
    stream_error,
    text,
    tool_use,
)
from tests.harness import lore_settings, settled, start_lore_on

BOT = "<@U0LORE>"
CHANNEL = "C0GENERAL"
RETRIES: int = Settings.model_fields["lore_model_retries"].default
TIMEOUT = 3.0  # seconds per model call in these tests (production: 60)
EDIT = tool_use("memory_insert", {"label": "org", "text": "Bob owns billing."})
APOLOGY_START = "Sorry, I couldn't finish that answer"

FAULTS: dict[str, tuple[Callable[[], ScriptItem], str]] = {
    "429 retry-after": (
        lambda: error(429, "rate_limit_error", "Rate limited", retry_after=1),
        "HTTP 429",
    ),
    "529 overloaded": (lambda: error(529, "overloaded_error", "Overloaded"), "HTTP 529"),
    "500": (lambda: error(500, "api_error", "Internal server error"), "HTTP 500"),
    "connection cut": (lambda: disconnect(), "connection failed"),
    "timeout": (lambda: delay(TIMEOUT + 2.0, then=reply(text("too late"))), "it timed out"),
}


@pytest.fixture
async def lore(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> AsyncIterator[Lore]:
    assert RETRIES >= 1, "these tests are about the production retries"
    settings = lore_settings(
        tmp_path, fake_llm, lore_model_retries=RETRIES, lore_model_timeout=TIMEOUT
    )
    running = await start_lore_on(team_emulator, settings)
    yield running
    await running.stop()


def turns(lore: Lore, outcome: str) -> float:
    counted = lore.services.metrics.registry.get_sample_value(
        "lore_turns_total", {"outcome": outcome}
    )
    return counted or 0.0


async def ask(emulator: SlackEmulator, lore: Lore, question: str) -> list[dict[str, Any]]:
    """Ask in a new thread and wait until everything is done; the bot's messages there."""
    asked = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} {question}")
    await emulator.wait_for_reply(CHANNEL, asked["ts"], timeout=60)
    await settled(emulator, lore, within=60)
    return emulator.bot_replies(CHANNEL, asked["ts"], finished=False)


async def org_versions(lore: Lore, team: str) -> list[tuple[int, str]]:
    history = await lore.stores.blocks.history(team, "org", MemoryScope.everything())
    return [(block.version, block.value) for block in history]


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_a_retry_gets_through_is_answered_with_the_edit_once(
    lore: Lore, team_emulator: SlackEmulator, fake_llm: FakeAnthropic, fault: str
) -> None:
    make_fault, _reason = FAULTS[fault]
    fake_llm.script(reply(EDIT), make_fault(), reply(text("Noted: Bob owns billing.")))
    bots = await ask(team_emulator, lore, "Bob owns billing, remember that")

    assert [message["text"] for message in bots] == ["Noted: Bob owns billing."]
    team = team_emulator.config.team_id
    assert (await org_versions(lore, team))[1:] == [(2, "Bob owns billing.")]
    assert len(fake_llm.requests) == 3  # the edit's step, then the next step twice
    assert fake_llm.requests[2]["messages"] == fake_llm.requests[1]["messages"]
    assert (turns(lore, "answered"), turns(lore, "failed")) == (1, 0)
    if fault == "429 retry-after":  # the SDK waited as long as the API asked
        assert fake_llm.request_times[2] - fake_llm.request_times[1] >= 1.0


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_every_attempt_meets_gives_one_apology_and_keeps_the_edit_whole(
    lore: Lore, team_emulator: SlackEmulator, fake_llm: FakeAnthropic, fault: str
) -> None:
    make_fault, reason = FAULTS[fault]
    fake_llm.script(reply(EDIT), *(make_fault() for _ in range(RETRIES + 1)))
    bots = await ask(team_emulator, lore, "Bob owns billing, remember that")

    assert len(bots) == 1
    assert bots[0]["text"].startswith(APOLOGY_START) and f"({reason})" in bots[0]["text"]
    team = team_emulator.config.team_id
    assert (await org_versions(lore, team))[1:] == [(2, "Bob owns billing.")]
    assert len(fake_llm.requests) == 1 + RETRIES + 1
    assert (turns(lore, "answered"), turns(lore, "failed")) == (0, 1)


BROKEN_STREAMS: dict[str, tuple[Callable[[Reply], ScriptItem], str]] = {
    "sse error event": (
        lambda partial: stream_error("overloaded_error", "Overloaded", partial),
        "overloaded_error",
    ),
    "connection cut": (lambda partial: disconnect(partial), "connection failed"),
}


@pytest.mark.parametrize("broken", list(BROKEN_STREAMS))
async def test_a_stream_broken_after_some_text_keeps_it_and_appends_the_apology(
    lore: Lore, team_emulator: SlackEmulator, fake_llm: FakeAnthropic, broken: str
) -> None:
    make_broken, reason = BROKEN_STREAMS[broken]
    # longer than the reply's stream buffer: part of it is on Slack before the stream breaks
    shown = (
        "Noted: Bob owns billing. " + "He also took over invoicing and the vendor contracts. " * 4
    )
    fake_llm.script(reply(EDIT), make_broken(reply(text(shown))))
    bots = await ask(team_emulator, lore, "Bob owns billing, remember that")

    assert len(bots) == 1
    assert bots[0].get("streaming_state") != "in_progress"
    said = bots[0]["text"]
    assert said.startswith(shown)
    apology = said.removeprefix(shown).strip()
    assert apology.startswith(APOLOGY_START) and f"({reason})" in apology
    team = team_emulator.config.team_id
    assert (await org_versions(lore, team))[1:] == [(2, "Bob owns billing.")]
    assert len(fake_llm.requests) == 2  # text was shown: the step is not asked again
    methods = [method for method, _ in team_emulator.calls]
    assert methods.count("chat.startStream") == 1 and "chat.postMessage" not in methods
    started = next(args for method, args in team_emulator.calls if method == "chat.startStream")
    assert "Bob owns billing" in str(started.get("chunks"))  # shown before the stream broke
    assert (turns(lore, "answered"), turns(lore, "failed")) == (0, 1)


async def test_a_stream_broken_before_any_edit_changes_no_memory(
    lore: Lore, team_emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(stream_error(partial=reply(text("Let me think about"))))
    bots = await ask(team_emulator, lore, "what do we know about billing?")

    assert len(bots) == 1
    assert bots[0]["text"].startswith("Let me think about")
    assert APOLOGY_START in bots[0]["text"]
    team = team_emulator.config.team_id
    assert [version for version, _ in await org_versions(lore, team)] == [1]
    assert (turns(lore, "answered"), turns(lore, "failed")) == (0, 1)


async def test_a_stream_cut_inside_the_edits_step_applies_no_edit(
    lore: Lore, team_emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(disconnect(reply(EDIT)))  # the tool_use block arrived, the message did not end
    bots = await ask(team_emulator, lore, "Bob owns billing, remember that")

    assert len(bots) == 1 and bots[0]["text"].startswith(APOLOGY_START)
    team = team_emulator.config.team_id
    assert [version for version, _ in await org_versions(lore, team)] == [1]
    assert len(fake_llm.requests) == 1
    assert (turns(lore, "answered"), turns(lore, "failed")) == (0, 1)
