"""`/recall` through signed HTTP: usage, matches with Block Kit, more, privacy, cited answer."""

from __future__ import annotations

from typing import Any

from app.main import Lore
from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import archived_message, eventually


async def final_answer(emulator: SlackEmulator, count: int) -> dict[str, Any]:
    """Wait for the `count`-th response_url answer and return it."""

    async def arrived() -> bool:
        return len([r for r in emulator.command_responses if r["via"] == "response_url"]) >= count

    await eventually(arrived)
    return [r for r in emulator.command_responses if r["via"] == "response_url"][count - 1]


def all_text(response: dict[str, Any]) -> str:
    parts = [response["text"]]
    for block in response["blocks"] or []:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(
            e.get("text", "") for e in block.get("elements", []) if isinstance(e.get("text"), str)
        )
    return "\n".join(parts)


def opened_links(response: dict[str, Any]) -> list[str]:
    """The permalinks behind the answer's Open buttons."""
    return [b["accessory"]["url"] for b in response["blocks"] if "accessory" in b]


async def test_empty_question_gets_usage_help(lore: Lore, emulator: SlackEmulator) -> None:
    result = await emulator.send_command("U0ALICE", "C0GENERAL", "/recall", "   ")
    assert result["ok"]
    assert "Usage" in result["response"]["text"]
    assert result["response"]["response_type"] == "ephemeral"


async def test_matches_are_listed_with_author_channel_date_and_link_then_more(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    posted = []
    for n in range(7):
        message = await emulator.post_message(
            "U0BOB", "C0GENERAL", f"Deploy checklist item {n}: run the database migration first."
        )
        posted.append(message)
    for message in posted:
        await archived_message(lore, "T0LORE", "C0GENERAL", message["ts"])
    fake_llm.script(reply(text("Run the migration before deploying.", citations=[0])))
    ack = await emulator.send_command(
        "U0ALICE", "C0RANDOM", "/recall", "deploy checklist migration"
    )
    assert ack["ok"] and "Searching" in ack["response"]["text"]
    first = await final_answer(emulator, 1)
    shown = all_text(first)
    assert first["response_type"] == "ephemeral"
    assert "*Answer:* Run the migration before deploying. [1]" in shown
    assert "Bob Brown in <#C0GENERAL> · just now" in shown  # a name: quoting pings no one
    assert "Deploy checklist item" in shown
    links = opened_links(first)
    assert len(links) == 5 and set(links) <= {m["permalink"] for m in posted}
    more = next(b for b in first["blocks"] if b["type"] == "actions")["elements"][0]
    status = await emulator.press_button(
        "U0ALICE", ack["response_url"], "recall_more", more["value"]
    )
    assert status == 200
    second = await final_answer(emulator, 2)
    assert second["body"].get("replace_original") is True
    second_links = opened_links(second)
    assert len(second_links) == 2 and not set(second_links) & set(links)
    assert "*6.*" in all_text(second)
    assert len(fake_llm.requests) == 1


async def test_private_channel_matches_only_reach_members(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    secret = await emulator.post_message(
        "U0ALICE", "C0LEADS", "Confidential: the acquisition of Globex closes in March."
    )
    await archived_message(lore_retrieval_only, "T0LORE", "C0LEADS", secret["ts"])
    await emulator.send_command("U0BOB", "C0GENERAL", "/recall", "Globex acquisition")
    outsider = await final_answer(emulator, 1)
    assert "closes in March" not in all_text(outsider)
    assert secret["permalink"] not in opened_links(outsider)
    await emulator.send_command("U0CAROL", "C0GENERAL", "/recall", "Globex acquisition")
    member = await final_answer(emulator, 2)
    assert "closes in March" in all_text(member)
    assert secret["permalink"] in [
        b["accessory"]["url"] for b in member["blocks"] if "accessory" in b
    ]


async def test_no_match_says_so(lore_retrieval_only: Lore, emulator: SlackEmulator) -> None:
    await emulator.send_command("U0ALICE", "C0GENERAL", "/recall", "quarterly roadmap")
    answer = await final_answer(emulator, 1)
    assert "No messages match “quarterly roadmap”" in all_text(answer)
