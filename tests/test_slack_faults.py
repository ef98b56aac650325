"""Slack answering Lore's reply with 429 or 5xx: the answer still arrives, once.

Lore's Web API client carries slack-sdk's retry handlers (429 after `Retry-After`, server
errors, dropped connections); past them, the streamed reply falls back to post + update of the
same message.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.main import Lore
from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import settled

BOT = "<@U0LORE>"
CHANNEL = "C0GENERAL"
ANSWER = "Billing is owned by Bob. " + "He took over invoicing and vendor contracts. " * 4


async def answered_once(emulator: SlackEmulator, lore: Lore) -> dict[str, Any]:
    """Ask; after everything settles, the thread's one bot message (asserting there is one)."""
    asked = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} who owns billing?")
    await emulator.wait_for_reply(CHANNEL, asked["ts"], timeout=60)
    await settled(emulator, lore, within=60)
    bots = emulator.bot_replies(CHANNEL, asked["ts"], finished=False)
    assert len(bots) == 1, [bot["text"] for bot in bots]
    assert bots[0].get("streaming_state") != "in_progress"
    return bots[0]


def called(emulator: SlackEmulator, method: str) -> int:
    return sum(1 for name, _ in emulator.calls if name == method)


@pytest.mark.parametrize("method", ["chat.startStream", "chat.postMessage"])
@pytest.mark.parametrize(
    "fault",
    [
        {"error": "ratelimited", "retry_after": 1},
        {"error": "internal_error", "status": 500},
        {"error": "service_unavailable", "status": 503},
        {"error": "bad_gateway", "status": 502},
        {"error": "gateway_timeout", "status": 504},
    ],
    ids=["429", "500", "503", "502", "504"],
)
async def test_a_reply_call_answered_with_429_or_5xx_still_delivers_the_answer_once(
    lore: Lore,
    emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    method: str,
    fault: dict[str, Any],
) -> None:
    if method == "chat.postMessage":  # streaming is not offered here: Lore posts and updates
        emulator.fail_method("chat.startStream", "not_allowed_token_type", times=100)
    emulator.fail_method(method, times=1, **fault)
    fake_llm.script(reply(text(ANSWER)))

    message = await answered_once(emulator, lore)

    assert message["text"].startswith(ANSWER.strip())
    assert "Sorry" not in message["text"]
    assert called(emulator, method) == 2  # the failed call, then its retry
    if fault["error"] == "ratelimited":  # the retry waited for Retry-After
        times = emulator.timed_calls(method)
        assert times[1] - times[0] >= 1.0


async def test_a_stream_slack_stops_taking_is_finished_in_the_same_message(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    emulator.fail_method("chat.appendStream", "internal_error", times=100, status=500)
    emulator.fail_method("chat.stopStream", "internal_error", times=100, status=500)
    fake_llm.script(reply(text(ANSWER), chunk_delay=0.01))

    message = await answered_once(emulator, lore)

    assert message["text"].startswith(ANSWER.strip())
    assert called(emulator, "chat.startStream") == 1
    assert called(emulator, "chat.postMessage") == 0
    assert called(emulator, "chat.update") >= 1
