"""Feedback buttons under replies, pressed through signed HTTP: stored, replaced, counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.main import Lore
from emulator import SlackEmulator
from emulator.workspace import EmulatorError
from memory.feedback import Verdict
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import eventually, lore_settings, start_lore_on

BOT = "<@U0LORE>"
TEAM = "T0LORE"
ACTION = "lore_feedback"


def feedback_buttons(message: dict[str, Any]) -> dict[str, Any]:
    """The feedback_buttons element of a message (KeyError-free: fails the test if absent)."""
    found = [
        element
        for block in message.get("blocks") or []
        if block["type"] == "context_actions"
        for element in block["elements"]
        if element["type"] == "feedback_buttons"
    ]
    assert len(found) == 1, f"no feedback buttons in {message.get('blocks')}"
    return found[0]


async def answered(emulator: SlackEmulator, fake_llm: FakeAnthropic, words: str) -> dict[str, Any]:
    """Ask Lore in #general; its finished reply."""
    fake_llm.script(reply(text(words)))
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} a question")
    return (await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20))[0]


async def ephemerals_for(emulator: SlackEmulator, user: str, count: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        return len([e for e in emulator.ephemerals if e["user"] == user]) >= count

    await eventually(arrived)
    return [e for e in emulator.ephemerals if e["user"] == user]


async def test_streamed_reply_has_feedback_buttons_and_votes_are_stored_and_replaced(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    answer = await answered(emulator, fake_llm, "Deploys freeze on Fridays.")
    assert "Deploys freeze on Fridays." in answer["text"]
    buttons = feedback_buttons(answer)
    assert buttons["action_id"] == ACTION
    assert buttons["positive_button"]["value"] == "helpful"
    assert buttons["negative_button"]["value"] == "not_helpful"

    press = emulator.press_message_button
    assert await press("U0BOB", "C0GENERAL", answer["ts"], ACTION, "helpful") == 200
    first = await ephemerals_for(emulator, "U0BOB", 1)
    assert first[-1]["text"] == "Thanks — marked helpful."
    assert first[-1]["thread_ts"] == answer["thread_ts"]
    feedback = lore.stores.feedback
    stored = await feedback.verdict(TEAM, "C0GENERAL", answer["ts"], "U0BOB")
    assert stored == Verdict.HELPFUL
    assert await feedback.counts(TEAM) == (1, 0)

    assert await press("U0BOB", "C0GENERAL", answer["ts"], ACTION, "not_helpful") == 200
    second = await ephemerals_for(emulator, "U0BOB", 2)
    assert second[-1]["text"] == "Changed your feedback to not helpful."
    assert await feedback.counts(TEAM) == (0, 1)

    assert await press("U0CAROL", "C0GENERAL", answer["ts"], ACTION, "helpful") == 200
    await ephemerals_for(emulator, "U0CAROL", 1)
    assert await feedback.counts(TEAM) == (1, 1)
    assert feedback_buttons(emulator.message("C0GENERAL", answer["ts"])) == buttons


async def test_vote_is_kept_with_the_threads_conversation(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    answer = await answered(emulator, fake_llm, "Bob owns billing.")
    await emulator.press_message_button("U0BOB", "C0GENERAL", answer["ts"], ACTION, "helpful")
    await ephemerals_for(emulator, "U0BOB", 1)
    conversation = await lore.stores.conversations.find(TEAM, "C0GENERAL", answer["thread_ts"])
    assert conversation is not None
    assert await lore.stores.feedback.conversation_votes(conversation.id) == {
        ("U0BOB", Verdict.HELPFUL)
    }


async def test_posted_reply_keeps_its_text_above_the_buttons(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    emulator.fail_method("chat.startStream", error="internal_error", times=5)
    answer = await answered(emulator, fake_llm, "Posted the old way.")
    sections = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section"]
    assert "Posted the old way." in "".join(sections)
    buttons = feedback_buttons(answer)
    status = await emulator.press_message_button(
        "U0CAROL", "C0GENERAL", answer["ts"], ACTION, buttons["negative_button"]["value"]
    )
    assert status == 200
    await ephemerals_for(emulator, "U0CAROL", 1)
    assert await lore.stores.feedback.counts(TEAM) == (0, 1)


async def test_only_buttons_on_the_message_can_be_pressed(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    answer = await answered(emulator, fake_llm, "Bob owns billing.")
    with pytest.raises(EmulatorError, match="no_such_button"):
        await emulator.press_message_button("U0BOB", "C0GENERAL", answer["ts"], ACTION, "meh")
    assert await lore.stores.feedback.counts(TEAM) == (0, 0)


async def test_press_over_socket_mode_is_stored(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    lore = await start_lore_on(emulator, lore_settings(tmp_path, fake_llm), socket_mode=True)
    try:
        await emulator.wait_for(lambda: emulator.socket.connected, timeout=10)
        answer = await answered(emulator, fake_llm, "Hello over the socket.")
        status = await emulator.press_message_button(
            "U0BOB", "C0GENERAL", answer["ts"], ACTION, "helpful"
        )
        assert status == 200
        await ephemerals_for(emulator, "U0BOB", 1)
        assert await lore.stores.feedback.counts(TEAM) == (1, 0)
    finally:
        await lore.stop()
