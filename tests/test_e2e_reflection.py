"""Reflection end to end: threads nobody asked Lore in go quiet, reflection (a model scripted
apart from the turns) writes notes from them, and later questions anywhere find those notes
under the same access rule as the messages they came from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.main import Lore
from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import eventually, lore_settings, start_lore_on, user_text

BOT = "<@U0LORE>"
REFLECT = "claude-haiku-4-5"
TEAM = "T0LORE"
QUIET = 0.4  # LORE_REFLECT_AFTER in these tests, seconds


def reflecting(tmp_path: Path, fake: FakeAnthropic, **overrides: Any) -> Any:
    return lore_settings(
        tmp_path,
        fake,
        lore_reflect_after=QUIET,
        lore_reflect_tokens_per_day=2_000_000,
        lore_reflect_model=REFLECT,
        **overrides,
    )


@pytest.fixture
async def lore_reflecting(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> AsyncIterator[Lore]:
    running = await start_lore_on(emulator, reflecting(tmp_path, fake_llm))
    yield running
    await running.stop()


def note_add(text_: str, channel: str, *ts: str, supersedes: str | None = None) -> Any:
    given: dict[str, Any] = {
        "text": text_,
        "sources": [{"channel": channel, "ts": t} for t in ts],
    }
    if supersedes:
        given["supersedes"] = supersedes
    return tool_use("note_add", given)


async def thread(
    emulator: SlackEmulator, channel: str, *lines: tuple[str, str]
) -> list[dict[str, Any]]:
    """Post a thread: the first line is its parent, the others reply in it."""
    user, said = lines[0]
    parent = await emulator.post_message(user, channel, said)
    posted = [parent]
    for user, said in lines[1:]:
        posted.append(await emulator.post_message(user, channel, said, thread_ts=parent["ts"]))
    return posted


async def notes_of(lore: Lore, team: str = TEAM) -> list[Any]:
    return await lore.stores.notes.active(team)


async def wait_notes(lore: Lore, count: int, team: str = TEAM) -> list[Any]:
    async def enough() -> bool:
        return len(await notes_of(lore, team)) >= count

    await eventually(enough, within=30)
    return await notes_of(lore, team)


def reflected_text(fake: FakeAnthropic) -> str:
    return "\n".join(user_text(r) for r in fake.requests_for(REFLECT))


async def test_a_quiet_public_thread_becomes_a_note_found_from_another_channel(
    lore_reflecting: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    lore = lore_reflecting
    posted = await thread(
        emulator,
        "C0GENERAL",
        ("U0BOB", "Who looks after billing now that Eve moved to sales?"),
        ("U0CAROL", "Dana owns billing from this week on."),
    )
    fake_llm.script_model(
        REFLECT,
        reply(
            note_add(
                "Dana owns billing (since Eve moved to sales).",
                "C0GENERAL",
                posted[0]["ts"],
                posted[1]["ts"],
            )
        ),
    )
    [note] = await wait_notes(lore, 1)
    assert note.channel_id == "C0GENERAL" and note.channel_type == "channel"
    assert {s.ts for s in note.sources} == {posted[0]["ts"], posted[1]["ts"]}
    assert note.written_by.startswith("reflection:")
    [call] = fake_llm.requests_for(REFLECT)
    seen = user_text(call)
    assert "Dana owns billing from this week on." in seen and BOT not in seen
    assert call["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert call["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "<org" in "\n".join(b["text"] for b in call["system"])

    fake_llm.script(
        reply(tool_use("search_conversations", {"query": "who owns billing"})),
        reply(text("Dana owns billing.", citations=[0])),
    )
    asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} who owns billing?")
    replies = await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20)
    turn = [r for r in fake_llm.requests if r.get("model") != REFLECT][-1]
    results = [
        block
        for message in turn["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "tool_result"
        for block in part["content"]
        if isinstance(part["content"], list)
    ]
    assert any("Dana owns billing (since Eve moved to sales)." in str(b) for b in results)
    cited = str(replies[0])
    assert posted[0]["ts"].replace(".", "") in cited or posted[1]["ts"].replace(".", "") in cited
