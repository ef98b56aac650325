"""Slack's size limits: the emulator refuses what Slack refuses, with Slack's errors, and Lore's
longest outputs (answers streamed or posted, many sources, /recall pages, the App Home and its
modals) stay within them, split or cut with a way to the rest, never silently dropped."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.app_home import BlockHistory, HomeSnapshot
from app.main import Lore
from emulator import SlackEmulator
from emulator.api.limits import check_view
from handlers.app_home_blocks import (
    EDIT_ACTION,
    SHOW_BACKFILL_ACTION,
    SHOW_BLOCK_ACTION,
    SHOW_EXCLUDED_ACTION,
    block_reading_modal,
    edit_modal,
    home_view,
)
from handlers.feedback_blocks import ACTION_ID as FEEDBACK_ACTION
from memory.blocks import Block, MemoryScope
from memory.edits import Rethink
from tests.fake_anthropic import FakeAnthropic, reply, stream_error, text, tool_use
from tests.harness import archived, lore_settings, start_lore_on

BOT = "<@U0LORE>"


def client_of(emulator: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as raised:
        await call
    return dict(raised.value.response.data)


# The emulator: Slack's limits and errors


async def test_message_text_over_40000_characters_is_msg_too_long(
    emulator: SlackEmulator,
) -> None:
    client = client_of(emulator)
    at_limit = await client.chat_postMessage(channel="C0GENERAL", text="a" * 40_000)
    assert at_limit["ok"]
    answer = await refused(client.chat_postMessage(channel="C0GENERAL", text="a" * 40_001))
    assert answer["error"] == "msg_too_long"
    answer = await refused(
        client.chat_update(channel="C0GENERAL", ts=at_limit["ts"], text="b" * 40_001)
    )
    assert answer["error"] == "msg_too_long"
    assert [r["method"] for r in emulator.limit_refusals] == ["chat.postMessage", "chat.update"]


async def test_blocks_over_their_limits_are_invalid_blocks(emulator: SlackEmulator) -> None:
    client = client_of(emulator)
    ok = await client.chat_postMessage(
        channel="C0GENERAL", text="x", blocks=[section("s" * 3000)] * 50
    )
    assert ok["ok"]
    too_long = await refused(
        client.chat_postMessage(channel="C0GENERAL", text="x", blocks=[section("s" * 3001)])
    )
    assert too_long["error"] == "invalid_blocks"
    assert too_long["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    too_many = await refused(
        client.chat_postMessage(channel="C0GENERAL", text="x", blocks=[section("s")] * 51)
    )
    assert too_many["error"] == "invalid_blocks"
    assert "no more than 50 items allowed [json-pointer:/blocks]" in str(too_many)
    ephemeral = await refused(
        client.chat_postEphemeral(
            channel="C0GENERAL", user="U0ALICE", text="x", blocks=[section("s")] * 51
        )
    )
    assert ephemeral["error"] == "invalid_blocks"


async def test_views_over_100_blocks_are_invalid_arguments(emulator: SlackEmulator) -> None:
    client = client_of(emulator)
    home = {"type": "home", "blocks": [section("s")] * 100}
    assert (await client.views_publish(user_id="U0ALICE", view=home))["ok"]
    answer = await refused(
        client.views_publish(user_id="U0ALICE", view={**home, "blocks": [section("s")] * 101})
    )
    assert answer["error"] == "invalid_arguments"
    assert "no more than 100 items allowed [json-pointer:/view/blocks]" in str(answer)
    long_section = {**home, "blocks": [section("s" * 3001)]}
    answer = await refused(client.views_publish(user_id="U0ALICE", view=long_section))
    assert answer["error"] == "invalid_arguments"


async def test_stream_calls_over_12000_characters_are_msg_too_long(
    emulator: SlackEmulator,
) -> None:
    client = client_of(emulator)
    parent = await emulator.post_message("U0ALICE", "C0GENERAL", "a long one please")
    args = {"recipient_team_id": "T0LORE", "recipient_user_id": "U0ALICE"}
    too_long = await refused(
        client.chat_startStream(
            channel="C0GENERAL", thread_ts=parent["ts"], markdown_text="m" * 12_001, **args
        )
    )
    assert too_long["error"] == "msg_too_long"
    started = await client.chat_startStream(
        channel="C0GENERAL", thread_ts=parent["ts"], markdown_text="m" * 12_000, **args
    )
    for _ in range(2):
        await client.chat_appendStream(
            channel="C0GENERAL", ts=started["ts"], markdown_text="m" * 12_000
        )
    answer = await refused(
        client.chat_appendStream(channel="C0GENERAL", ts=started["ts"], markdown_text="m" * 12_001)
    )
    assert answer["error"] == "msg_too_long"
    chunked = [{"type": "markdown_text", "text": "m" * 6_001}] * 2
    answer = await refused(
        client.chat_appendStream(channel="C0GENERAL", ts=started["ts"], chunks=chunked)
    )
    assert answer["error"] == "msg_too_long"
    # 36,000 so far: a message never grows past 40,000 characters either
    answer = await refused(
        client.chat_appendStream(channel="C0GENERAL", ts=started["ts"], markdown_text="m" * 4_001)
    )
    assert answer["error"] == "msg_too_long"
    stopped = await client.chat_stopStream(
        channel="C0GENERAL", ts=started["ts"], markdown_text="m" * 4_000
    )
    assert len(stopped["message"]["text"]) == 40_000


async def test_response_url_answers_over_the_limits_are_refused(
    emulator: SlackEmulator,
) -> None:
    url = emulator.commands.payload("U0ALICE", "C0GENERAL", "/recall", "x")["response_url"]
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"text": "a" * 40_001}) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "msg_too_long"
        many = {"text": "x", "blocks": [section("s")] * 51}
        async with session.post(url, json=many) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_blocks"
        async with session.post(url, json={"text": "x", "blocks": [section("s")] * 50}) as response:
            assert response.status == 200
    assert [r["method"] for r in emulator.limit_refusals] == ["response_url", "response_url"]
    assert len(emulator.command_responses) == 1


# Lore: long answers


def long_answer(paragraphs: int, words: int = 120) -> str:
    """Paragraphs of numbered words, so any lost or doubled piece shows."""
    return "\n\n".join(" ".join(f"p{p}w{w}" for w in range(words)) for p in range(paragraphs))


async def whole_reply(emulator: SlackEmulator, channel: str, thread_ts: str) -> list[dict]:
    """Lore's finished reply: every bot message of the thread, once the last (the one with
    the feedback buttons) is there."""

    def finished() -> list[dict[str, Any]] | None:
        replies = emulator.bot_replies(channel, thread_ts)
        last_blocks = json.dumps(replies[-1].get("blocks") or []) if replies else ""
        return replies if FEEDBACK_ACTION in last_blocks else None

    found: list[dict[str, Any]] = await emulator.wait_for(finished, 60, description="reply")
    return found


def stream_text(args: dict[str, Any]) -> str:
    """The text one chat.*Stream call carried: markdown_text and markdown_text chunks."""
    chunks = args.get("chunks") or []
    chunks = json.loads(chunks) if isinstance(chunks, str) else chunks
    texts = [c.get("text", "") for c in chunks if c.get("type") == "markdown_text"]
    return str(args.get("markdown_text") or "") + "".join(texts)


def shown_text(message: dict[str, Any]) -> str:
    """What a message shows: its blocks' section texts where it has those, else its text."""
    sections = [
        b["text"]["text"] for b in message.get("blocks") or [] if b.get("type") == "section"
    ]
    return "".join(sections) if sections else str(message.get("text", ""))


async def test_a_streamed_answer_over_100000_characters_goes_on_in_more_messages(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    answer = long_answer(130)
    assert len(answer) > 100_000
    fake_llm.script(reply(text(answer)))
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} tell me everything")

    replies = await whole_reply(emulator, "C0GENERAL", asked["ts"])

    assert emulator.limit_refusals == []
    assert 3 <= len(replies) <= 4
    assert all(len(r["text"]) <= 40_000 for r in replies)
    assert "".join(r["text"] for r in replies) == answer
    streamed = [stream_text(args) for method, args in emulator.calls if "Stream" in method]
    assert sum(len(t) for t in streamed) == len(answer)  # the stream calls carried it all
    assert max(len(t) for t in streamed) <= 12_000
    assert sum(method == "chat.startStream" for method, _ in emulator.calls) == len(replies)
    # the buttons once, under the last part
    with_buttons = [FEEDBACK_ACTION in json.dumps(r.get("blocks") or []) for r in replies]
    assert with_buttons == [False] * (len(replies) - 1) + [True]


async def test_a_posted_answer_over_40000_characters_goes_on_in_more_messages(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    emulator.fail_method("chat.startStream", "not_allowed_token_type", times=1)
    answer = long_answer(60)
    assert len(answer) > 40_000
    fake_llm.script(reply(text(answer)))
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} tell me everything")

    replies = await whole_reply(emulator, "C0GENERAL", asked["ts"])

    assert emulator.limit_refusals == []
    assert not any(method == "chat.appendStream" for method, _ in emulator.calls)
    assert len(replies) >= 4
    assert "".join(shown_text(r) for r in replies) == answer
    assert "".join(r["text"] for r in replies) == answer
    assert all(len(b) <= 50 for b in (r.get("blocks") or [] for r in replies))


async def test_an_apology_after_a_full_message_still_fits(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    answer = long_answer(47)
    answer += " x" * ((38_990 - len(answer)) // 2)  # just under what one streamed message holds
    fake_llm.script(stream_error(partial=reply(text(answer))))
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} tell me everything")

    def apologised() -> list[dict[str, Any]] | None:
        replies = emulator.bot_replies("C0GENERAL", asked["ts"])
        return replies if replies and "Sorry" in replies[-1]["text"] else None

    replies = await emulator.wait_for(apologised, 60, description="the apology")

    assert emulator.limit_refusals == []
    assert len(replies) == 1  # the apology ends the message that holds the answer
    assert len(replies[0]["text"]) <= 40_000 and replies[0]["text"].startswith(answer)


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "posted"])
async def test_many_sources_under_a_long_answer_all_arrive(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic, streamed: bool
) -> None:
    said = []
    for channel in ("C0GENERAL", "C0RANDOM"):
        for n in range(20):
            said.append(
                await emulator.post_message(
                    "U0CAROL", channel, f"Release train note {n}: the kestrel build {n} shipped."
                )
            )
    await archived(lore, "T0LORE", len(said))
    if not streamed:
        emulator.fail_method("chat.startStream", "not_allowed_token_type", times=1)
    answer = long_answer(44)  # about 38,000 characters: the sources overflow one message
    fake_llm.script(
        reply(
            tool_use(
                "search_conversations",
                {"query": "kestrel build", "channel": "C0GENERAL", "limit": 20},
            ),
            tool_use(
                "search_conversations",
                {"query": "kestrel build", "channel": "C0RANDOM", "limit": 20},
            ),
        ),
        reply(text(answer, citations=list(range(40)))),
    )
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} every kestrel build?")

    replies = await whole_reply(emulator, "C0GENERAL", asked["ts"])

    assert emulator.limit_refusals == []
    assert len(replies) >= 2
    assert all(len(r["text"]) <= 40_000 for r in replies)
    shown = "".join(shown_text(r) for r in replies)
    assert shown.startswith(answer)
    assert "*Sources*" in shown
    assert {m["permalink"] for m in said} <= set(re.findall(r"https?://[^)|>\s]+", shown))


# Lore: /recall


async def test_recall_with_a_long_answer_and_long_matches_stays_within_a_message(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    posted = [
        await emulator.post_message(
            "U0BOB", "C0GENERAL", f"Kestrel runbook part {n}: " + "restart the kestrel pods. " * 400
        )
        for n in range(7)
    ]
    await archived(lore, "T0LORE", len(posted))
    answer = long_answer(10, words=150)  # about 10,000 characters: four sections
    fake_llm.script(reply(text(answer)))
    question = "how do I restart the kestrel pods " + "and then what " * 150
    ack = await emulator.send_command("U0ALICE", "C0GENERAL", "/recall", question)

    first = await recall_answer(emulator, 1)

    assert emulator.limit_refusals == []
    blocks = first["blocks"]
    assert len(blocks) <= 50
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert "".join(sections).startswith("*Answer:* " + answer)
    # each match is cut to a snippet, with a link to the whole message
    links = [b["accessory"]["url"] for b in blocks if "accessory" in b]
    assert len(links) == 5 and set(links) <= {m["permalink"] for m in posted}
    more = next(b for b in blocks if b["type"] == "actions")["elements"][0]
    assert (
        await emulator.press_button("U0ALICE", ack["response_url"], "recall_more", more["value"])
        == 200
    )
    second = await recall_answer(emulator, 2)
    assert emulator.limit_refusals == []
    assert len([b for b in second["blocks"] if "accessory" in b]) == 2


async def test_recall_answer_too_long_for_a_message_is_cut_and_says_so(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    posted = await emulator.post_message("U0BOB", "C0GENERAL", "The kestrel pods restart nightly.")
    await archived(lore, "T0LORE", 1)
    answer = long_answer(60)  # over 50,000 characters
    fake_llm.script(reply(text(answer)))
    await emulator.send_command("U0ALICE", "C0GENERAL", "/recall", "kestrel restart")

    first = await recall_answer(emulator, 1)

    assert emulator.limit_refusals == []
    sections = [b["text"]["text"] for b in first["blocks"] if b["type"] == "section"]
    shown = "".join(sections)
    assert len(first["blocks"]) <= 50 and len(first["text"]) <= 40_000
    assert shown.startswith("*Answer:* " + answer[:25_000])
    assert "ask Lore in a thread or a DM for all of it" in shown
    assert posted["permalink"] in json.dumps(first["blocks"])


async def recall_answer(emulator: SlackEmulator, count: int) -> dict[str, Any]:
    """The `count`-th answer /recall sent to its response_url."""

    def arrived() -> dict[str, Any] | None:
        answers = [r for r in emulator.command_responses if r["via"] == "response_url"]
        return answers[count - 1] if len(answers) >= count else None

    found: dict[str, Any] = await emulator.wait_for(arrived, 30, description="recall answer")
    return found


# Lore: the App Home and its modals


def block_text(n: int) -> str:
    """`n` characters of numbered lines."""
    lines, size = [], 0
    while size < n:
        line = f"fact {len(lines)}: " + "the kestrel service restarts nightly " * 2
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:n]


async def latest_modal(emulator: SlackEmulator, user: str, count: int) -> dict[str, Any]:
    def opened() -> dict[str, Any] | None:
        modals = emulator.view_interactions.modals(user)
        return modals[-1] if len(modals) >= count else None

    found: dict[str, Any] = await emulator.wait_for(opened, 30, description="a modal")
    return found


def view_sections(view: dict[str, Any]) -> str:
    return "".join(
        b["text"]["text"] for b in view["blocks"] if "text" in b and b["type"] == "section"
    )


async def test_app_home_at_its_limits_shows_what_fits_and_the_rest_on_request(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    lore = await start_lore_on(
        emulator, lore_settings(tmp_path, None, lore_memory_block_limit=45_000)
    )
    try:
        org_text, persona_text = block_text(45_000), block_text(44_000)
        blocks = lore.stores.blocks
        await blocks.edit("T0LORE", "org", Rethink(org_text), scope=MemoryScope.everything())
        await blocks.edit(
            "T0LORE", "persona", Rethink(persona_text), scope=MemoryScope.everything()
        )
        state = lore.services.backfill.state
        channels = [f"C9{n:07d}" for n in range(120)]
        for n, channel in enumerate(channels):
            emulator.add_channel(channel, f"kestrel-{n}")
            await state.request("T0LORE", channel)
            await state.pause("T0LORE", channel, error="ratelimited " * 20)
        excluded = [f"C8{n:07d}" for n in range(700)]
        for channel in excluded:
            await lore.stores.exclusions.exclude("T0LORE", channel, "U0ALICE")

        await emulator.open_app_home("U0ALICE")
        home: dict[str, Any] = await emulator.wait_for(
            lambda: emulator.views.get("U0ALICE"), 30, description="the Home tab"
        )

        assert emulator.limit_refusals == []
        assert len(home["blocks"]) <= 100
        shown = json.dumps(home["blocks"])
        assert SHOW_BACKFILL_ACTION in shown and SHOW_EXCLUDED_ACTION in shown
        assert org_text[:20_000] in view_sections(home)

        # the whole org block, in a modal
        await emulator.view_interactions.home_action("U0ALICE", SHOW_BLOCK_ACTION, value="org")
        modal = await latest_modal(emulator, "U0ALICE", 1)
        assert view_sections(modal) == org_text
        # every backfill row and every excluded channel
        await emulator.view_interactions.home_action("U0ALICE", SHOW_BACKFILL_ACTION, value="all")
        rows = view_sections(await latest_modal(emulator, "U0ALICE", 2))
        assert all(f"<#{channel}>" in rows for channel in channels)
        await emulator.view_interactions.home_action("U0ALICE", SHOW_EXCLUDED_ACTION, value="all")
        listed = view_sections(await latest_modal(emulator, "U0ALICE", 3))
        assert all(f"<#{channel}>" in listed for channel in excluded)
        # the block edit modal holds the block at its limit
        await emulator.view_interactions.home_action("U0ALICE", EDIT_ACTION, value="org")
        editor = await latest_modal(emulator, "U0ALICE", 4)
        values = [
            b["element"].get("initial_value", "") for b in editor["blocks"] if b["type"] == "input"
        ]
        assert len(values) >= 15 and "\n".join(v for v in values if v) == org_text
        assert emulator.limit_refusals == []
    finally:
        await lore.stop()


def test_views_stay_within_slack_limits_however_much_there_is() -> None:
    """Pure: the Home tab with many blocks and the modals of huge blocks pass Slack's checks."""
    now = datetime.now(UTC)

    def block(label: str, size: int) -> Block:
        return Block(
            label=label,
            value=block_text(size),
            version=2,
            char_limit=max(size, 5000),
            created_at=now,
            conversation_id=None,
            user_id="U0ALICE",
            operation="rethink",
        )

    many = [BlockHistory(block(f"b{n}", 40_000), 2, [block(f"b{n}", 10)]) for n in range(30)]
    snapshot = HomeSnapshot(many, 1, 2, 3, 4, [], [])
    view = home_view(snapshot, admin=True)
    check_view(view)
    assert "…and 18 more blocks" in json.dumps(view, ensure_ascii=False)
    huge = block("org", 400_000)
    modal = edit_modal(huge)
    check_view(modal)
    assert "too long to edit here" in json.dumps(modal)
    check_view(block_reading_modal(huge))
    check_view(edit_modal(block("org", 290_000)))
