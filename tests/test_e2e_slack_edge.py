"""The Slack edge through real HTTP: signatures, retries, double delivery, odd input, failures."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from app.main import Lore
from emulator import SlackEmulator
from memory.blocks import MemoryScope
from tests.fake_anthropic import FakeAnthropic, delay, error, reply, text, tool_use
from tests.harness import (
    archived,
    archived_message,
    lore_settings,
    settled,
    start_lore_on,
    user_text,
)

EVERYTHING = MemoryScope.everything()
BOT = "<@U0LORE>"


def bot_replies(emulator: SlackEmulator, channel: str, thread_ts: str) -> list[dict[str, object]]:
    return [m for m in emulator.thread(channel, thread_ts) if m.get("bot_id")]


async def test_retries_and_double_delivery_give_exactly_one_reply(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(reply(text("Only once.")))
    posted = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} say it once")
    await emulator.drain()
    event = {
        "type": "app_mention",
        "user": "U0ALICE",
        "text": f"{BOT} say it once",
        "ts": posted["ts"],
        "channel": "C0GENERAL",
        "event_ts": posted["ts"],
    }
    retried_id = f"Ev{uuid.uuid4().hex[:12].upper()}"
    for retry in (1, 2, 3):
        status = await emulator.deliver_event(
            event, event_id=retried_id, retry_num=retry, retry_reason="http_timeout"
        )
        assert status == 200
    await emulator.wait_for_reply("C0GENERAL", posted["ts"], timeout=20)
    await settled(emulator, lore)
    assert len(bot_replies(emulator, "C0GENERAL", posted["ts"])) == 1
    assert len(fake_llm.requests) == 1


def _signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
            timestamp=stamp, body=body
        ),
    }


async def test_unsigned_forged_and_stale_requests_are_refused(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0LORE",
            "event_id": "EvFORGED",
            "event": {
                "type": "message",
                "channel": "C0GENERAL",
                "channel_type": "channel",
                "user": "U0ALICE",
                "text": f"{BOT} forged",
                "ts": "1700000000.000100",
            },
        }
    ).encode()
    secret = emulator.config.signing_secret
    url = f"{lore.url}/slack/events"
    cases = {
        "missing headers": {"Content-Type": "application/json"},
        "bad signature": _signed("not-the-secret", body),
        "older than 5 minutes": _signed(secret, body, int(time.time()) - 301),
    }
    async with aiohttp.ClientSession() as session:
        for case, headers in cases.items():
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 401, case
        async with session.post(
            url, data=b"{not json", headers=_signed(secret, b"{not json")
        ) as response:
            assert 400 <= response.status < 500
    await settled(emulator, lore)
    assert await lore.stores.archive.count("T0LORE") == 0
    assert fake_llm.requests == []


async def test_ignored_event_types_still_get_200(lore: Lore, emulator: SlackEmulator) -> None:
    event = {"type": "member_joined_channel", "user": "U0BOB", "channel": "C0GENERAL"}
    assert await emulator.deliver_event(event) == 200
    assert await emulator.deliver_event({"type": "app_home_opened", "user": "U0BOB"}) == 200
    for subtype in ("channel_join", "channel_topic", "bot_message"):  # messages Lore skips
        joined = {
            "type": "message",
            "subtype": subtype,
            "user": "U0BOB",
            "channel": "C0GENERAL",
            "ts": "1700000000.000100",
            "text": "<@U0BOB> has joined the channel",
        }
        assert await emulator.deliver_event(joined) == 200, subtype
    await settled(emulator, lore)
    assert await lore.stores.archive.count("T0LORE") == 0


async def test_huge_and_odd_unicode_messages_are_archived_and_answered(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.respond_with(
        lambda request: reply(text("שלום 👋" if "Zalgo" in user_text(request) else "Read it all."))
    )
    huge = f"{BOT} " + ("release notes line. " * 2000)[:40_000]
    first = await emulator.post_message("U0ALICE", "C0GENERAL", huge)
    odd = f"{BOT} Zalgo z̷̢̛a̴l̸g̵o, RTL שלום עולם, emoji 👩🏽‍💻🏳️‍🌈, math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u200b\u2028 end"
    second = await emulator.post_message("U0BOB", "C0GENERAL", odd)
    assert (
        "Read it all."
        in (await emulator.wait_for_reply("C0GENERAL", first["ts"], timeout=30))[0]["text"]
    )
    assert (
        "שלום 👋"
        in (await emulator.wait_for_reply("C0GENERAL", second["ts"], timeout=30))[0]["text"]
    )
    stored = await archived_message(lore, "T0LORE", "C0GENERAL", first["ts"])
    assert len(stored.text) == len(huge)
    stored_odd = await archived_message(lore, "T0LORE", "C0GENERAL", second["ts"])
    assert stored_odd.text == odd
    asked_huge = [r for r in fake_llm.requests if "release notes line" in user_text(r)]
    assert "message cut" in user_text(asked_huge[0])


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (error(500, "api_error", "boom"), "HTTP 500"),
        (error(529, "overloaded_error", "Overloaded"), "HTTP 529"),
        (delay(8.0, then=reply(text("too late"))), "it timed out"),
    ],
    ids=["500", "529", "timeout"],
)
async def test_model_failure_gives_one_apology_and_no_memory_change(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic, failure: object, reason: str
) -> None:
    fake_llm.script(failure)  # type: ignore[arg-type]
    asked = await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} remember that Bob owns billing"
    )
    replies = await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=30)
    await settled(emulator, lore)
    assert len(bot_replies(emulator, "C0GENERAL", asked["ts"])) == 1
    assert replies[0]["text"].startswith("Sorry, I couldn't finish that answer")
    assert f"({reason})" in replies[0]["text"]
    assert "Traceback" not in replies[0]["text"]
    assert [b.version for b in await lore.stores.blocks.history("T0LORE", "org", EVERYTHING)] == [1]


async def test_failure_after_a_memory_edit_keeps_the_whole_edit(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(
        reply(tool_use("memory_insert", {"label": "org", "text": "Bob owns billing."})),
        error(500, "api_error", "boom"),
    )
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} Bob owns billing")
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=30)
    await settled(emulator, lore)
    replies = emulator.bot_replies("C0GENERAL", asked["ts"], finished=False)
    assert len(replies) == 1
    assert replies[0]["text"].startswith("Sorry, I couldn't finish that answer")
    assert "(HTTP 500)" in replies[0]["text"]
    # the edit ran for real (its result went back to the model) and is stored once, whole
    tool_result = fake_llm.requests[1]["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result" and not tool_result.get("is_error")
    history = await lore.stores.blocks.history("T0LORE", "org", EVERYTHING)
    assert [(b.version, b.value) for b in history][1:] == [(2, "Bob owns billing.")]


async def test_streaming_failure_falls_back_to_post_and_update(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    emulator.fail_method("chat.startStream", error="internal_error", times=5)
    fake_llm.script(reply(text("Posted the old way.")))
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} hi")
    replies = await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
    assert "Posted the old way." in replies[0]["text"]
    assert any(method == "chat.postMessage" for method, _ in emulator.calls)


async def test_retrieval_only_mode_answers_from_the_archive_with_links(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    said = await emulator.post_message(
        "U0CAROL", "C0GENERAL", "The on-call rotation for payments is owned by team Falcon."
    )
    await archived(lore_retrieval_only, "T0LORE", 1)
    asked = await emulator.post_message(
        "U0ALICE", "C0RANDOM", f"{BOT} who owns the payments on-call?"
    )
    answer = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]["text"]
    assert "retrieval-only mode" in answer
    assert said["permalink"] in answer


async def test_retrieval_only_remember_edits_memory(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    asked = await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} remember: Falcon owns payments"
    )
    answer = (await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20))[0]["text"]
    assert "version 2" in answer
    org = await lore_retrieval_only.stores.blocks.get("T0LORE", "org", EVERYTHING)
    assert org is not None and org.value == "Falcon owns payments"


async def test_socket_mode_delivers_and_acknowledges_on_the_socket(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    lore = await start_lore_on(emulator, lore_settings(tmp_path, fake_llm), socket_mode=True)
    try:
        await emulator.wait_for(lambda: emulator.socket.connected, timeout=10)
        fake_llm.script(reply(text("Hello over the socket.")))
        asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} are you there?")
        replies = await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
        assert "Hello over the socket." in replies[0]["text"]
        assert emulator.socket_acks
    finally:
        await lore.stop()
