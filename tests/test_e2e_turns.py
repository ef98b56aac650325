"""End to end through signed HTTP: mentions answered in threads, memory shared across threads."""

from __future__ import annotations

import re
from typing import Any

from app.main import Lore
from emulator import SlackEmulator
from memory.audience import Audience
from memory.blocks import MemoryScope
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import archived, eventually, settled, system_text, user_text

EVERYTHING = MemoryScope.everything()

BOT = "<@U0LORE>"


async def test_mention_is_answered_in_its_thread_after_a_tool_call(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    parent = await emulator.post_message("U0BOB", "C0GENERAL", "Planning the Q3 launch here.")
    await emulator.post_message(
        "U0CAROL", "C0GENERAL", "Marketing wants the 14th.", thread_ts=parent["ts"]
    )
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": "Q3 launch date"})),
        reply(text("The launch is planned for the 14th.")),
    )
    await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} when is the launch?", thread_ts=parent["ts"]
    )
    replies = await emulator.wait_for_reply("C0GENERAL", parent["ts"], timeout=20)
    assert "launch is planned for the 14th" in replies[0]["text"]
    first, second = fake_llm.requests
    history = user_text(first)
    assert "Planning the Q3 launch here." in history
    assert "Marketing wants the 14th." in history
    assert "when is the launch?" in history
    assert "<persona" in system_text(first) and "<org" in system_text(first)
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert {tool["name"] for tool in first["tools"]} == {
        "search_conversations",
        "memory_insert",
        "memory_replace",
        "memory_rethink",
        "note_add",
        "note_retract",
    }
    assert second["messages"][-1]["content"][0]["type"] == "tool_result"
    assert ("assistant.threads.setStatus", "C0GENERAL") in {
        (method, args.get("channel_id")) for method, args in emulator.calls
    }
    assert any(method == "chat.startStream" for method, _ in emulator.calls)


async def test_taught_in_one_thread_is_known_in_another(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(
        reply(tool_use("memory_insert", {"label": "org", "text": "Deploys freeze on Fridays."})),
        reply(text("Noted: no deploys on Fridays.")),
    )
    a = await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} remember: deploys freeze on Fridays"
    )
    await emulator.wait_for_reply("C0GENERAL", a["ts"], timeout=20)
    fake_llm.script(reply(text("Not on a Friday.")))
    b = await emulator.post_message("U0BOB", "C0RANDOM", f"{BOT} can I deploy this Friday?")
    await emulator.wait_for_reply("C0RANDOM", b["ts"], timeout=20)
    in_b = fake_llm.requests[-1]
    assert "Deploys freeze on Fridays." in system_text(in_b)
    assert 'version="2"' in system_text(in_b)
    history = await lore.stores.blocks.history("T0LORE", "org", EVERYTHING)
    assert history[-1].user_id == "U0ALICE"
    assert history[-1].conversation_id is not None


async def test_fact_said_in_one_thread_is_found_and_cited_from_another(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    said = await emulator.post_message(
        "U0CAROL", "C0GENERAL", "FYI the VPN certificates rotate every 90 days, next on May 3."
    )
    await archived(lore, "T0LORE", 1)
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": "VPN certificate rotation"})),
        reply(text("They rotate every 90 days.", citations=[0])),
    )
    asked = await emulator.post_message(
        "U0ALICE", "C0RANDOM", f"{BOT} how often do VPN certs rotate?"
    )
    replies = await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20)
    tool_result = fake_llm.requests[1]["messages"][-1]["content"][0]
    sources = [
        block["source"] for block in tool_result["content"] if block["type"] == "search_result"
    ]
    assert sources[0] == said["permalink"]
    assert said["permalink"] in replies[0]["text"]


async def test_later_messages_in_a_thread_continue_without_a_mention(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(reply(text("Hello!")), reply(text("Still here.")))
    first = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} hi")
    await emulator.wait_for_reply("C0GENERAL", first["ts"], timeout=20)
    # `hi` starts its thread: there is nothing before it to read
    assert "conversations.replies" not in [m for m, _ in emulator.calls]
    await emulator.post_message("U0ALICE", "C0GENERAL", "and a follow-up", thread_ts=first["ts"])
    replies = await emulator.wait_for_reply("C0GENERAL", first["ts"], count=2, timeout=20)
    assert "Still here." in replies[1]["text"]
    assert "Hello!" in str(fake_llm.requests[1]["messages"])  # the thread so far
    other = await emulator.post_message("U0BOB", "C0GENERAL", "not for Lore")
    await archived(lore, "T0LORE", 5)
    await settled(emulator, lore)
    assert len(fake_llm.requests) == 2
    assert not [m for m in emulator.thread("C0GENERAL", other["ts"]) if m.get("bot_id")]


async def test_dm_is_answered_without_a_mention(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(reply(text("Hi Alice.")))
    dm = await emulator.post_message("U0ALICE", "D0ALICE", "hello there")
    replies = await emulator.wait_for_reply("D0ALICE", dm["ts"], timeout=20)
    assert "Hi Alice." in replies[0]["text"]


async def test_fifty_threads_each_teach_a_fact_and_none_is_lost(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    def respond(request: dict[str, Any]) -> Any:
        last = request["messages"][-1]["content"]
        if isinstance(last, list) and last[0].get("type") == "tool_result":
            return reply(text("Saved."))
        number = re.search(r"fact number (\d+)", user_text(request))
        assert number
        return reply(tool_use("memory_insert", {"label": "org", "text": f"Fact {number[1]}"}))

    fake_llm.respond_with(respond)
    posts = [
        await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} learn fact number {n}")
        for n in range(50)
    ]
    for post in posts:
        await emulator.wait_for_reply("C0GENERAL", post["ts"], timeout=60)
    history = await lore.stores.blocks.history("T0LORE", "org", EVERYTHING)
    assert [b.version for b in history] == list(range(1, 52))
    assert sorted(history[-1].value.splitlines()) == sorted(f"Fact {n}" for n in range(50))
    assert len({b.conversation_id for b in history[1:]}) == 50


async def test_lore_reply_is_archived_for_later_search(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(reply(text("The staging password lives in the vault under ops/staging.")))
    asked = await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} where is the staging password?"
    )
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)

    async def reply_archived() -> bool:
        hits = await lore.stores.archive.search(
            "T0LORE", "vault ops/staging", audience=Audience.everyone(), limit=5
        )
        return any(hit.message.is_bot for hit in hits)

    await eventually(reply_archived)
