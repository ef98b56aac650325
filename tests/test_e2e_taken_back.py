"""Text taken back leaves Lore's copies: deleting a message removes Lore's archived answers that
quoted it; editing away the quoted text does too; Lore's replies in excluded channels are never
archived."""

from __future__ import annotations

from typing import Any

from app.main import Lore
from emulator import SlackEmulator
from memory.audience import Audience
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import archived_message, eventually, settled

BOT = "<@U0LORE>"


async def cited_answer(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic, query: str, answer: str
) -> dict[str, Any]:
    """Alice asks in #random; the model searches `query` and answers citing the first result.
    The answer once archived."""
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": query})),
        reply(text(answer, citations=[0])),
    )
    asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} {query}?")
    posted = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]
    await archived_message(lore, "T0LORE", "C0RANDOM", posted["ts"])
    return posted


async def gone(lore: Lore, ts: str, channel: str = "C0RANDOM") -> None:
    async def deleted() -> bool:
        return await lore.stores.archive.get("T0LORE", channel, ts) is None

    await eventually(deleted)


async def test_a_deleted_message_leaves_search_with_the_answers_that_quoted_it(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    vpn = await emulator.post_message(
        "U0BOB", "C0GENERAL", "VPN certificates rotate every 90 days."
    )
    wifi = await emulator.post_message(
        "U0CAROL", "C0GENERAL", "The guest wifi password is tulip42."
    )
    for said in (vpn, wifi):
        await archived_message(lore, "T0LORE", "C0GENERAL", said["ts"])
    quoting_vpn = await cited_answer(
        lore, emulator, fake_llm, "VPN certificates rotate", "Every 90 days."
    )
    quoting_wifi = await cited_answer(
        lore, emulator, fake_llm, "guest wifi password", "It is tulip42."
    )
    archive = lore.stores.archive
    hits = await archive.search("T0LORE", "VPN rotate 90 days", audience=Audience.everyone())
    assert quoting_vpn["ts"] in {hit.message.ts for hit in hits}

    await emulator.delete_message("C0GENERAL", vpn["ts"])

    await gone(lore, quoting_vpn["ts"])
    await settled(emulator, lore)
    assert await archive.get("T0LORE", "C0GENERAL", vpn["ts"]) is None
    hits = await archive.search("T0LORE", "VPN rotate 90 days", audience=Audience.everyone())
    assert not {vpn["ts"], quoting_vpn["ts"]} & {hit.message.ts for hit in hits}
    # control: the answer that quoted another message stays
    assert await archive.get("T0LORE", "C0RANDOM", quoting_wifi["ts"]) is not None


async def test_an_edit_that_removes_the_quoted_text_removes_the_answer(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    launch = await emulator.post_message("U0BOB", "C0GENERAL", "The launch is on the 14th.")
    standup = await emulator.post_message("U0CAROL", "C0GENERAL", "Standup moves to 9:30.")
    for said in (launch, standup):
        await archived_message(lore, "T0LORE", "C0GENERAL", said["ts"])
    quoting_launch = await cited_answer(lore, emulator, fake_llm, "launch date", "The 14th.")
    quoting_standup = await cited_answer(lore, emulator, fake_llm, "standup time", "At 9:30.")

    # control: an edit that keeps the quoted text keeps the answer
    await emulator.edit_message("C0GENERAL", standup["ts"], "Standup moves to 9:30. Room 4.")
    await settled(emulator, lore)
    edited = await lore.stores.archive.get("T0LORE", "C0GENERAL", standup["ts"])
    assert edited is not None and edited.text.endswith("Room 4.")
    assert await lore.stores.archive.get("T0LORE", "C0RANDOM", quoting_standup["ts"]) is not None

    await emulator.edit_message("C0GENERAL", launch["ts"], "The launch moved to the 21st.")

    await gone(lore, quoting_launch["ts"])
    stored = await lore.stores.archive.get("T0LORE", "C0GENERAL", launch["ts"])
    assert stored is not None and stored.text == "The launch moved to the 21st."


async def test_a_deleted_channel_takes_the_answers_that_quoted_it_along(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    emulator.add_channel("C0TEMP", "temp", members=["U0ALICE", "U0BOB"])
    said = await emulator.post_message("U0BOB", "C0TEMP", "The Osprey demo is on Tuesday.")
    await archived_message(lore, "T0LORE", "C0TEMP", said["ts"])
    quoting = await cited_answer(lore, emulator, fake_llm, "Osprey demo", "On Tuesday.")

    await emulator.delete_channel("C0TEMP", user="U0BOB")

    await gone(lore, quoting["ts"])
    assert await lore.stores.archive.get("T0LORE", "C0TEMP", said["ts"]) is None


async def test_lore_replies_in_an_excluded_channel_are_not_archived(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    await lore.services.app_home.exclude_channel("T0LORE", "C0RANDOM", "U0ALICE")
    excluded = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} remember: x")
    excluded_reply = (await emulator.wait_for_reply("C0RANDOM", excluded["ts"], timeout=20))[0]
    included = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} anything on deploys?")
    included_reply = (await emulator.wait_for_reply("C0GENERAL", included["ts"], timeout=20))[0]

    await archived_message(lore, "T0LORE", "C0GENERAL", included_reply["ts"])  # control
    await settled(emulator, lore)
    assert await lore.stores.archive.get("T0LORE", "C0RANDOM", excluded_reply["ts"]) is None
    assert await lore.stores.archive.get("T0LORE", "C0RANDOM", excluded["ts"]) is None


async def test_a_reply_of_lore_deleted_in_slack_leaves_the_archive(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    """An admin deletes one of Lore's answers: nobody finds it in Lore any more; Lore's other
    answer, not deleted, stays (the control)."""
    fake_llm.script(reply(text("The staging password is marigold7.")))
    asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} staging password?")
    leaked = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]
    fake_llm.script(reply(text("The staging server reboots at midnight.")))
    asked = await emulator.post_message("U0BOB", "C0RANDOM", f"{BOT} staging reboots?")
    kept = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]
    for posted in (leaked, kept):
        await archived_message(lore, "T0LORE", "C0RANDOM", posted["ts"])

    await emulator.delete_message("C0RANDOM", leaked["ts"])

    await gone(lore, leaked["ts"])
    await settled(emulator, lore)
    hits = await lore.stores.archive.search(
        "T0LORE", "staging password marigold7", audience=Audience.everyone()
    )
    assert leaked["ts"] not in {hit.message.ts for hit in hits}
    assert await lore.stores.archive.get("T0LORE", "C0RANDOM", kept["ts"]) is not None
