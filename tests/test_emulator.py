"""The Slack emulator, driven through the real slack_sdk clients and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from emulator import EmulatorConfig, SlackEmulator

SECRET = secrets.token_hex(16)
BOT = "U0LORE"
TS_FORMAT = re.compile(r"^\d{10}\.\d{6}$")

FormHandler = Callable[[dict[str, str]], Awaitable[web.Response]]


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    valid: bool

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}


@dataclass
class Receiver:
    """A tiny app acting as events_url: checks Slack signatures and records every request."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    on_form: FormHandler | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = SignatureVerifier(SECRET).is_valid_request(body, dict(request.headers))
        received = Received(dict(request.headers), body, valid)
        self.requests.append(received)
        delay = self.delays.pop(0) if self.delays else 0.0
        if delay:
            await asyncio.sleep(delay)
        if not valid:
            return web.Response(status=401, text="invalid signature")
        if self.on_form is not None and request.content_type.endswith("urlencoded"):
            return await self.on_form(received.form)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, headers=self.headers)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Inner events of the validly signed event_callback bodies, in arrival order."""
        return [
            r.json["event"]
            for r in self.requests
            if r.valid and r.headers.get("Content-Type") == "application/json"
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/slack/events", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield receiver
    await runner.cleanup()


def make_config(events_url: str | None) -> EmulatorConfig:
    return EmulatorConfig(
        signing_secret=SECRET,
        events_url=events_url,
        retry_delays=(0.05, 0.05, 0.05),
        ack_timeout=0.5,
    )


@pytest.fixture
async def emu(receiver: Receiver) -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(make_config(receiver.url)) as emulator:
        yield emulator


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=emu.config.bot_token, base_url=emu.api_url)


async def api_error(call: Awaitable[Any]) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


# Events API delivery


async def test_delivery_is_signed_and_shaped_like_slack(emu: SlackEmulator, receiver: Receiver):
    posted = await emu.post_message("U0BOB", "C0GENERAL", "morning all")
    await emu.drain()

    assert [r.valid for r in receiver.requests] == [True]
    body = receiver.requests[0].json
    assert body["type"] == "event_callback"
    assert body["team_id"] == "T0LORE" and body["api_app_id"] == "A0LORE"
    assert body["event_id"].startswith("Ev") and isinstance(body["event_time"], int)
    assert body["authorizations"][0] == {
        "enterprise_id": None,
        "team_id": "T0LORE",
        "user_id": BOT,
        "is_bot": True,
        "is_enterprise_install": False,
    }
    assert body["event_context"].startswith("4-")
    event = body["event"]
    assert event["type"] == "message" and event["channel_type"] == "channel"
    assert (event["user"], event["text"], event["ts"]) == ("U0BOB", "morning all", posted["ts"])
    assert TS_FORMAT.match(posted["ts"])
    assert "X-Slack-Retry-Num" not in receiver.requests[0].headers


async def test_forged_and_stale_requests_fail_verification(emu: SlackEmulator, receiver: Receiver):
    event = {"type": "message", "channel": "C0GENERAL", "user": "U0BOB", "text": "hi"}
    assert await emu.deliver_event(event, retry_num=2, retry_reason="http_error") == 200
    assert receiver.requests[-1].headers["X-Slack-Retry-Num"] == "2"
    assert receiver.requests[-1].headers["X-Slack-Retry-Reason"] == "http_error"

    assert await emu.deliver_event(event, signing_secret=secrets.token_hex(16)) == 401
    assert await emu.deliver_event(event, timestamp=int(time.time()) - 600) == 401
    status, text = await emu.send_raw(b'{"type":"event_callback"}', {"Content-Type": "x"})
    assert (status, text) == (401, "invalid signature")
    assert [r.valid for r in receiver.requests] == [True, False, False, False]


async def test_mention_is_delivered_twice_with_distinct_event_ids(
    emu: SlackEmulator, receiver: Receiver
):
    posted = await emu.post_message("U0ALICE", "C0GENERAL", f"<@{BOT}> what did we decide?")
    await emu.drain()

    bodies = [r.json for r in receiver.requests]
    assert sorted(b["event"]["type"] for b in bodies) == ["app_mention", "message"]
    assert len({b["event_id"] for b in bodies}) == 2
    assert {b["event"]["ts"] for b in bodies} == {posted["ts"]}
    mention = next(b["event"] for b in bodies if b["event"]["type"] == "app_mention")
    assert mention["channel"] == "C0GENERAL" and "channel_type" not in mention
    assert {"type": "user", "user_id": BOT} in mention["blocks"][0]["elements"][0]["elements"]


async def test_channel_types_and_no_app_mention_in_dms(emu: SlackEmulator, receiver: Receiver):
    await emu.post_message("U0ALICE", "C0LEADS", "budget")
    await emu.post_message("U0ALICE", "D0ALICE", f"<@{BOT}> private question")
    emu.add_channel("C0QUIET", "quiet", members=["U0BOB"], bot_member=False)
    await emu.post_message("U0BOB", "C0QUIET", f"<@{BOT}> you are not here")
    await emu.drain()

    assert [(e["type"], e["channel"], e["channel_type"]) for e in receiver.events] == [
        ("message", "C0LEADS", "group"),
        ("message", "D0ALICE", "im"),
    ]


async def test_bot_messages_come_back_as_message_events_with_bot_id(
    emu: SlackEmulator, client: AsyncWebClient, receiver: Receiver
):
    await client.chat_postMessage(channel="C0GENERAL", text=f"I am <@{BOT}>")
    await emu.drain()

    assert len(receiver.events) == 1
    event = receiver.events[0]
    assert (event["type"], event["bot_id"], event["user"]) == ("message", "B0LORE", BOT)
    assert event["bot_profile"]["app_id"] == "A0LORE"


async def test_edit_and_delete_deliver_changed_and_deleted(emu: SlackEmulator, receiver: Receiver):
    posted = await emu.post_message("U0BOB", "C0GENERAL", "first draft")
    await emu.edit_message("C0GENERAL", posted["ts"], "second draft")
    await emu.delete_message("C0GENERAL", posted["ts"])
    await emu.drain()

    changed = next(e for e in receiver.events if e.get("subtype") == "message_changed")
    assert changed["message"]["text"] == "second draft"
    assert changed["message"]["edited"]["user"] == "U0BOB"
    assert changed["previous_message"]["text"] == "first draft"
    deleted = next(e for e in receiver.events if e.get("subtype") == "message_deleted")
    assert deleted["deleted_ts"] == posted["ts"]
    assert deleted["previous_message"]["text"] == "second draft"
    assert emu.messages("C0GENERAL") == []


async def test_a_failing_receiver_gets_retries(emu: SlackEmulator, receiver: Receiver):
    receiver.statuses = [500, 503]
    await emu.post_message("U0BOB", "C0GENERAL", "are you there?")
    await emu.drain()

    retries = [
        (r.headers.get("X-Slack-Retry-Num"), r.headers.get("X-Slack-Retry-Reason"))
        for r in receiver.requests
    ]
    assert retries == [(None, None), ("1", "http_error"), ("2", "http_error")]
    assert len({r.json["event_id"] for r in receiver.requests}) == 1
    assert emu.deliveries[0].delivered and len(emu.deliveries[0].attempts) == 3


async def test_a_slow_receiver_gets_a_timeout_retry(emu: SlackEmulator, receiver: Receiver):
    receiver.delays = [0.8]
    await emu.post_message("U0BOB", "C0GENERAL", "slow one")
    await emu.drain()

    assert receiver.requests[1].headers["X-Slack-Retry-Num"] == "1"
    assert receiver.requests[1].headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert emu.deliveries[0].delivered


async def test_delivery_gives_up_after_three_retries(emu: SlackEmulator, receiver: Receiver):
    receiver.statuses = [500] * 10
    await emu.post_message("U0BOB", "C0GENERAL", "doomed")
    await emu.drain()

    nums = [r.headers.get("X-Slack-Retry-Num") for r in receiver.requests]
    assert nums == [None, "1", "2", "3"]
    assert not emu.deliveries[0].delivered and emu.deliveries[0].done


async def test_x_slack_no_retry_stops_retries(emu: SlackEmulator, receiver: Receiver):
    receiver.statuses = [500]
    receiver.headers = {"X-Slack-No-Retry": "1"}
    await emu.post_message("U0BOB", "C0GENERAL", "once only")
    await emu.drain()
    assert len(receiver.requests) == 1 and not emu.deliveries[0].delivered


async def test_emit_event_and_app_home(
    emu: SlackEmulator, client: AsyncWebClient, receiver: Receiver
):
    await client.views_publish(user_id="U0BOB", view={"type": "home", "blocks": []})
    await emu.open_app_home("U0BOB")
    await emu.emit_event({"type": "reaction_added", "user": "U0BOB", "reaction": "eyes"})
    await emu.drain()
    home, reaction = receiver.events
    assert (home["type"], home["channel"], home["tab"]) == ("app_home_opened", "D0BOB", "home")
    assert home["view"]["id"] == emu.views["U0BOB"]["id"]
    assert reaction["reaction"] == "eyes" and TS_FORMAT.match(reaction["event_ts"])


async def test_post_message_does_not_wait_for_delivery(emu: SlackEmulator, receiver: Receiver):
    receiver.delays = [0.4]
    started = time.monotonic()
    await emu.post_message("U0BOB", "C0GENERAL", "fire and forget")
    assert time.monotonic() - started < 0.2
    assert emu.delivery.pending == 1
    await emu.drain()
    assert emu.delivery.pending == 0 and emu.deliveries[0].delivered


# Web API


async def test_tokens_methods_and_channels_are_checked(emu: SlackEmulator, client: AsyncWebClient):
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=emu.api_url)
    error = await api_error(wrong.auth_test())
    assert (error.response.status_code, error.response["error"]) == (200, "invalid_auth")
    anonymous = AsyncWebClient(base_url=emu.api_url)
    assert (await api_error(anonymous.auth_test())).response["error"] == "not_authed"
    assert (await api_error(client.api_call("nope.nothing"))).response["error"] == "unknown_method"
    missing = await api_error(client.chat_postMessage(channel="C0NOPE", text="hi"))
    assert missing.response["error"] == "channel_not_found"
    socket = await api_error(client.apps_connections_open(app_token=emu.config.bot_token))
    assert socket.response["error"] == "not_allowed_token_type"
    assert [method for method, _ in emu.calls][-2:] == ["chat.postMessage", "apps.connections.open"]


async def test_form_multipart_json_and_query_bodies(emu: SlackEmulator):
    token = emu.config.bot_token
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    async with aiohttp.ClientSession() as session:
        form = {
            "token": token,
            "channel": "C0GENERAL",
            "text": "form",
            "blocks": json.dumps(blocks),
        }
        async with session.post(emu.api_url + "chat.postMessage", data=form) as response:
            assert (await response.json())["message"]["blocks"] == blocks
        multipart = aiohttp.FormData({"channel": "C0GENERAL", "text": "multipart"})
        multipart.add_field("file", b"bytes", filename="notes.txt")
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(
            emu.api_url + "chat.postMessage", data=multipart, headers=headers
        ) as response:
            assert (await response.json())["ok"] is True
        url = emu.api_url + f"conversations.info?channel=C0GENERAL&token={token}"
        async with session.get(url) as response:
            assert (await response.json())["channel"]["name"] == "general"
        async with session.post(emu.api_url + "auth.test", json={"token": token}) as response:
            assert (await response.json())["user_id"] == BOT
    assert [m["text"] for m in emu.messages("C0GENERAL")] == ["form", "multipart"]


async def test_post_update_delete_and_ephemeral(emu: SlackEmulator, client: AsyncWebClient):
    posted = await client.chat_postMessage(
        channel="general",
        text="draft",
        metadata={"event_type": "lore_answer", "event_payload": {"id": "1"}},
    )
    assert posted["channel"] == "C0GENERAL" and TS_FORMAT.match(posted["ts"])
    updated = await client.chat_update(channel="C0GENERAL", ts=posted["ts"], text="final")
    assert updated["text"] == "final" and emu.message("C0GENERAL", posted["ts"])["text"] == "final"
    history = await client.conversations_history(channel="C0GENERAL")
    assert "metadata" not in history["messages"][0]
    history = await client.conversations_history(channel="C0GENERAL", include_all_metadata=True)
    assert history["messages"][0]["metadata"]["event_type"] == "lore_answer"

    human = await emu.post_message("U0BOB", "C0GENERAL", "mine")
    error = await api_error(client.chat_update(channel="C0GENERAL", ts=human["ts"], text="x"))
    assert error.response["error"] == "cant_update_message"
    error = await api_error(client.chat_delete(channel="C0GENERAL", ts=human["ts"]))
    assert error.response["error"] == "cant_delete_message"
    await client.chat_delete(channel="C0GENERAL", ts=posted["ts"])
    assert [m["text"] for m in emu.messages("C0GENERAL")] == ["mine"]

    dm = await client.chat_postMessage(channel="U0BOB", text="a DM by user id")
    assert dm["channel"] == "D0BOB"
    reply = await client.chat_postMessage(
        channel="C0GENERAL", thread_ts=human["ts"], text="also here", reply_broadcast=True
    )
    assert [m["ts"] for m in emu.messages("C0GENERAL")][-1] == reply["ts"]
    assert emu.thread("C0GENERAL", human["ts"])[-1]["subtype"] == "thread_broadcast"

    ephemeral = await client.chat_postEphemeral(channel="C0LEADS", user="U0CAROL", text="psst")
    assert emu.ephemerals[0]["user"] == "U0CAROL" and emu.ephemerals[0]["text"] == "psst"
    assert ephemeral["message_ts"] == emu.ephemerals[0]["ts"]
    error = await api_error(client.chat_postEphemeral(channel="C0LEADS", user="U0BOB", text="x"))
    assert error.response["error"] == "user_not_in_channel"


async def test_streaming_lifecycle_and_errors(emu: SlackEmulator, client: AsyncWebClient):
    question = await emu.post_message("U0ALICE", "C0GENERAL", f"<@{BOT}> explain the roadmap")
    thread = question["ts"]
    error = await api_error(client.chat_startStream(channel="C0GENERAL", thread_ts=thread))
    assert error.response["error"] == "missing_recipient_team_id"

    started = await client.chat_startStream(
        channel="C0GENERAL",
        thread_ts=thread,
        recipient_team_id="T0LORE",
        recipient_user_id="U0ALICE",
        markdown_text="The road",
    )
    await client.chat_appendStream(channel="C0GENERAL", ts=started["ts"], markdown_text="map is")
    partial = await emu.wait_for_reply("C0GENERAL", thread, finished=False)
    assert partial[0]["text"] == "The roadmap is" and partial[0]["streaming_state"] == "in_progress"
    assert emu.bot_replies("C0GENERAL", thread) == []

    stopped = await client.chat_stopStream(
        channel="C0GENERAL",
        ts=started["ts"],
        markdown_text=" short.",
        blocks=[{"type": "context", "elements": [{"type": "mrkdwn", "text": "sources"}]}],
    )
    assert stopped["message"]["text"] == "The roadmap is short."
    final = await emu.wait_for_reply("C0GENERAL", thread, timeout=1.0)
    assert final[0]["ts"] == started["ts"] and final[0]["streaming_state"] == "completed"
    assert final[0]["thread_ts"] == thread and final[0]["bot_id"] == "B0LORE"

    for late in (
        client.chat_appendStream(channel="C0GENERAL", ts=started["ts"], markdown_text="more"),
        client.chat_stopStream(channel="C0GENERAL", ts=started["ts"]),
    ):
        assert (await api_error(late)).response["error"] == "message_not_in_streaming_state"
    error = await api_error(
        client.chat_appendStream(channel="C0GENERAL", ts="1.000001", markdown_text="x")
    )
    assert error.response["error"] == "message_not_found"


async def test_slack_sdk_chat_stream_helper_in_a_dm(emu: SlackEmulator, client: AsyncWebClient):
    question = await emu.post_message("U0ALICE", "D0ALICE", "what is lore?")
    streamer = await client.chat_stream(channel="D0ALICE", thread_ts=question["ts"], buffer_size=4)
    await streamer.append(markdown_text="Lore ")
    await streamer.append(markdown_text="remembers")
    await streamer.stop(markdown_text=".")

    replies = await emu.wait_for_reply("D0ALICE", question["ts"], timeout=1.0)
    assert replies[0]["text"] == "Lore remembers."
    assert [m for m, _ in emu.calls if "Stream" in m] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]


async def test_status_is_recorded_and_cleared_by_a_reply(
    emu: SlackEmulator, client: AsyncWebClient
):
    question = await emu.post_message("U0ALICE", "D0ALICE", "how do I deploy?")
    key = ("D0ALICE", question["ts"])
    await client.assistant_threads_setStatus(
        channel_id="D0ALICE", thread_ts=question["ts"], status="is thinking…"
    )
    assert emu.statuses[key] == "is thinking…"
    await client.chat_postMessage(channel="D0ALICE", thread_ts=question["ts"], text="Like this.")
    assert key not in emu.statuses

    await client.assistant_threads_setStatus(
        channel_id="D0ALICE", thread_ts=question["ts"], status="still thinking"
    )
    await client.assistant_threads_setStatus(
        channel_id="D0ALICE", thread_ts=question["ts"], status=""
    )
    assert key not in emu.statuses


async def test_permalinks(emu: SlackEmulator, client: AsyncWebClient):
    top = await emu.post_message("U0BOB", "C0RANDOM", "lunch?")
    reply = await emu.post_message("U0CAROL", "C0RANDOM", "yes", thread_ts=top["ts"])
    digits = top["ts"].replace(".", "")
    assert top["permalink"] == f"{emu.url}/archives/C0RANDOM/p{digits}"
    assert reply["permalink"] == (
        f"{emu.url}/archives/C0RANDOM/p{reply['ts'].replace('.', '')}"
        f"?thread_ts={top['ts']}&cid=C0RANDOM"
    )
    link = await client.chat_getPermalink(channel="C0RANDOM", message_ts=reply["ts"])
    assert link["permalink"] == reply["permalink"]
    async with aiohttp.ClientSession() as session, session.get(top["permalink"]) as response:
        assert (await response.json())["message"]["text"] == "lunch?"


async def test_replies_pagination_and_history(emu: SlackEmulator, client: AsyncWebClient):
    parent = await emu.post_message("U0ALICE", "C0GENERAL", "parent", deliver=False)
    for i in range(7):
        await emu.post_message("U0BOB", "C0GENERAL", f"reply {i}", thread_ts=parent["ts"])
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        page = await client.conversations_replies(
            channel="C0GENERAL", ts=parent["ts"], limit=3, cursor=cursor
        )
        pages.append(page["messages"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            assert page["has_more"] is False
            break
    assert len(pages) == 4 and all(p[0]["ts"] == parent["ts"] for p in pages)
    assert [m["text"] for p in pages for m in p[1:]] == [f"reply {i}" for i in range(7)]
    assert pages[0][0]["reply_count"] == 7 and pages[0][0]["reply_users"] == ["U0BOB"]
    all_ts = [parent["ts"]] + [m["ts"] for p in pages for m in p[1:]]
    assert all_ts == sorted(all_ts) and len(set(all_ts)) == 8

    history = await client.conversations_history(channel="C0GENERAL")
    assert [m["text"] for m in history["messages"]] == ["parent"]
    assert emu.thread("C0GENERAL", parent["ts"])[-1]["text"] == "reply 6"
    bad = await api_error(client.conversations_replies(channel="C0GENERAL", ts="1.000001"))
    assert bad.response["error"] == "thread_not_found"


async def test_guests_other_organisations_and_shared_channels(
    emu: SlackEmulator, client: AsyncWebClient
):
    emu.add_channel("C0PARTNER", "partner", members=["U0BOB"])
    emu.add_guest("U0GUEST", "gina", ["C0PARTNER"], single_channel=True)
    emu.add_external_user("U0EXT", "ext", "T0OTHER", ["C0PARTNER"])
    guest = (await client.users_info(user="U0GUEST"))["user"]
    assert (guest["is_restricted"], guest["is_ultra_restricted"]) == (True, True)
    assert guest["team_id"] == emu.config.team_id
    bob = (await client.users_info(user="U0BOB"))["user"]
    assert (bob["is_restricted"], bob["is_ultra_restricted"]) == (False, False)
    assert (await client.users_info(user="U0EXT"))["user"]["team_id"] == "T0OTHER"
    members = (await client.conversations_members(channel="C0PARTNER"))["members"]
    assert {"U0GUEST", "U0EXT"} <= set(members)
    assert not (await client.conversations_info(channel="C0PARTNER"))["channel"]["is_ext_shared"]
    emu.set_ext_shared("C0PARTNER")
    shared = (await client.conversations_info(channel="C0PARTNER"))["channel"]
    assert shared["is_ext_shared"] and shared["is_shared"]
    guest_channels = await client.users_conversations(user="U0GUEST", types="public_channel")
    assert [c["id"] for c in guest_channels["channels"]] == ["C0PARTNER"]


async def test_workspace_directory_methods(emu: SlackEmulator, client: AsyncWebClient):
    alice = (await client.users_info(user="U0ALICE"))["user"]
    bob = (await client.users_info(user="U0BOB"))["user"]
    assert (alice["is_admin"], alice["is_owner"], bob["is_admin"]) == (True, True, False)
    assert (await client.users_info(user=BOT))["user"]["is_bot"] is True
    users = await client.users_list()
    assert {"U0ALICE", "U0BOB", "U0CAROL", BOT} <= {u["id"] for u in users["members"]}
    assert (await client.auth_test())["user_id"] == BOT
    assert (await client.team_info())["team"]["domain"] == "lore-demo"

    leads = (await client.conversations_info(channel="C0LEADS"))["channel"]
    assert leads["is_private"] and leads["is_member"]
    members = await client.conversations_members(channel="C0LEADS")
    assert members["members"] == ["U0ALICE", "U0CAROL", BOT]
    public = await client.conversations_list()
    assert {c["id"] for c in public["channels"]} == {"C0GENERAL", "C0RANDOM"}
    everything = await client.conversations_list(types="public_channel,private_channel,im")
    assert {"C0LEADS", "D0ALICE"} <= {c["id"] for c in everything["channels"]}

    emu.add_channel("C0NEW", "new", members=["U0BOB"], bot_member=False)
    error = await api_error(client.chat_postMessage(channel="C0NEW", text="hi"))
    assert error.response["error"] == "not_in_channel"
    joined = await client.conversations_join(channel="C0NEW")
    assert joined["channel"]["is_member"] is True
    await client.chat_postMessage(channel="C0NEW", text="hi")

    view = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}],
    }
    published = await client.views_publish(user_id="U0BOB", view=view)
    assert emu.views["U0BOB"]["blocks"] == view["blocks"]
    assert published["view"]["id"].startswith("V")


async def test_fail_method_errors_and_rate_limits(emu: SlackEmulator, client: AsyncWebClient):
    emu.fail_method("chat.postMessage", "ratelimited")
    error = await api_error(client.chat_postMessage(channel="C0GENERAL", text="one"))
    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "1"
    assert error.response["error"] == "ratelimited"
    assert (await client.chat_postMessage(channel="C0GENERAL", text="two"))["ok"]

    emu.fail_method("chat.startStream", "internal_error", times=2)
    for _ in range(2):
        error = await api_error(
            client.chat_startStream(channel="D0ALICE", thread_ts="1700000000.000100")
        )
        assert error.response["error"] == "internal_error"

    patient = AsyncWebClient(
        token=emu.config.bot_token,
        base_url=emu.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    emu.fail_method("chat.postMessage", "ratelimited")
    assert (await patient.chat_postMessage(channel="C0GENERAL", text="three"))["ok"]
    assert [m["text"] for m in emu.messages("C0GENERAL")] == ["two", "three"]


async def test_wait_for_explains_a_timeout(emu: SlackEmulator):
    posted = await emu.post_message("U0BOB", "C0GENERAL", "anyone?", deliver=False)
    with pytest.raises(TimeoutError, match=r"1 bot reply in C0GENERAL/.*Web API calls"):
        await emu.wait_for_reply("C0GENERAL", posted["ts"], timeout=0.05)
    assert await emu.wait_for(lambda: len(emu.thread("C0GENERAL", posted["ts"])), 0.1) == 1


# Socket Mode


async def test_socket_mode_with_slack_sdk_client():
    async with SlackEmulator(make_config(None)) as emu:
        web_client = AsyncWebClient(base_url=emu.api_url)
        socket = SocketModeClient(app_token=emu.config.app_token, web_client=web_client)
        raw: list[dict[str, Any]] = []
        requests: list[SocketModeRequest] = []

        async def on_raw(_: AsyncBaseSocketModeClient, message: dict[str, Any], __: str | None):
            raw.append(message)

        async def on_request(client: AsyncBaseSocketModeClient, request: SocketModeRequest):
            requests.append(request)
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

        socket.message_listeners.append(on_raw)
        socket.socket_mode_request_listeners.append(on_request)
        await socket.connect()
        try:
            await emu.wait_for(lambda: raw, 2.0)
            assert raw[0]["type"] == "hello"
            assert raw[0]["connection_info"] == {"app_id": "A0LORE"}
            posted = await emu.post_message("U0ALICE", "C0GENERAL", f"<@{BOT}> over the socket")
            await emu.wait_for(lambda: len(emu.socket_acks) >= 2, 5.0)
            await emu.drain()
        finally:
            await socket.close()

    assert {r.type for r in requests} == {"events_api"}
    assert sorted(r.payload["event"]["type"] for r in requests) == ["app_mention", "message"]
    assert {r.payload["event"]["ts"] for r in requests} == {posted["ts"]}
    assert all(r.retry_attempt == 0 for r in requests)
    assert {a["envelope_id"] for a in emu.socket_acks} == {r.envelope_id for r in requests}
    assert all(d.delivered and d.attempts[0].via == "socket" for d in emu.deliveries)


async def test_socket_mode_redelivers_when_not_acked():
    async with SlackEmulator(make_config(None)) as emu:
        socket = SocketModeClient(
            app_token=emu.config.app_token, web_client=AsyncWebClient(base_url=emu.api_url)
        )
        attempts: list[tuple[int | None, str | None]] = []

        async def ack_only_retries(client: AsyncBaseSocketModeClient, request: SocketModeRequest):
            attempts.append((request.retry_attempt, request.retry_reason))
            if request.retry_attempt:
                await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

        socket.socket_mode_request_listeners.append(ack_only_retries)
        await socket.connect()
        try:
            await emu.wait_for(lambda: emu.socket.connected, 2.0)
            await emu.post_message("U0BOB", "C0RANDOM", "ack me later")
            await emu.drain()
        finally:
            await socket.close()
    assert attempts == [(0, ""), (1, "timeout")]
    assert emu.deliveries[0].delivered


async def test_bolt_app_over_socket_mode_answers_a_mention():
    async with SlackEmulator(make_config(None)) as emu:
        bolt_client = AsyncWebClient(token=emu.config.bot_token, base_url=emu.api_url)
        app = AsyncApp(client=bolt_client)

        @app.event("app_mention")
        async def answer(event: dict[str, Any], say: Any) -> None:
            await say(text="on it", thread_ts=event["ts"])

        @app.event("message")
        async def ignore(event: dict[str, Any]) -> None:
            return None

        handler = AsyncSocketModeHandler(
            app, emu.config.app_token, web_client=AsyncWebClient(base_url=emu.api_url)
        )
        await handler.connect_async()
        try:
            await emu.wait_for(lambda: emu.socket.connected, 2.0)
            posted = await emu.post_message("U0CAROL", "C0GENERAL", f"<@{BOT}> summarise")
            replies = await emu.wait_for_reply("C0GENERAL", posted["ts"], timeout=5.0)
            await emu.drain()
        finally:
            await handler.close_async()
    assert [r["text"] for r in replies] == ["on it"]
    assert "auth.test" in [method for method, _ in emu.calls]
    assert len(emu.socket_acks) == 3


async def test_bolt_app_over_http_verifies_and_answers():
    config = make_config(None)
    bolt = AsyncApp(
        client=AsyncWebClient(token=config.bot_token, base_url="http://unset/"),
        signing_secret=SECRET,
    )

    @bolt.event("app_mention")
    async def answer(event: dict[str, Any], say: Any) -> None:
        await say(text="on it (http)", thread_ts=event["ts"])

    @bolt.event("message")
    async def ignore() -> None:
        return None

    runner = web.AppRunner(bolt.web_app(path="/slack/events"), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    config.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        async with SlackEmulator(config) as emu:
            bolt.client.base_url = emu.api_url
            posted = await emu.post_message("U0BOB", "C0RANDOM", f"<@{BOT}> status?")
            replies = await emu.wait_for_reply("C0RANDOM", posted["ts"], timeout=5.0)
            await emu.drain()
    finally:
        await runner.cleanup()
    assert [r["text"] for r in replies] == ["on it (http)"]
    assert all(d.delivered and d.attempts[0].status == 200 for d in emu.deliveries)
    assert len(emu.deliveries) == 3


# Slash commands and the control API


async def test_slash_command_with_response_url(emu: SlackEmulator, receiver: Receiver):
    background: list[asyncio.Task[None]] = []

    async def answer(fields: dict[str, str]) -> web.Response:
        async def later() -> None:
            async with aiohttp.ClientSession() as session:
                body = {"response_type": "in_channel", "text": f"3 notes on {fields['text']}"}
                async with session.post(fields["response_url"], json=body) as response:
                    assert response.status == 200

        background.append(asyncio.create_task(later()))
        return web.json_response({"text": "searching…"})

    receiver.on_form = answer
    result = await emu.send_command("U0ALICE", "C0GENERAL", "/recall", "roadmap")
    await asyncio.gather(*background)

    assert result["ok"] and result["response"] == {"text": "searching…"}
    form = receiver.requests[0].form
    assert receiver.requests[0].valid
    assert (form["command"], form["text"], form["user_id"]) == ("/recall", "roadmap", "U0ALICE")
    assert form["response_url"].startswith(f"{emu.url}/_emulator/response_url/")
    assert form["trigger_id"] and form["team_id"] == "T0LORE"
    assert [(r["via"], r["response_type"], r["text"]) for r in emu.command_responses] == [
        ("ack", "ephemeral", "searching…"),
        ("response_url", "in_channel", "3 notes on roadmap"),
    ]
    assert emu.messages("C0GENERAL")[-1]["text"] == "3 notes on roadmap"


async def test_control_api(emu: SlackEmulator, client: AsyncWebClient, receiver: Receiver):
    async with aiohttp.ClientSession() as session:
        async with session.get(emu.url + "/") as response:
            assert "/_emulator/messages" in await response.text()
        body = {
            "user": "U0ALICE",
            "channel": "C0GENERAL",
            "text": f"<@{BOT}> hi",
            "thread_ts": None,
        }
        async with session.post(emu.url + "/_emulator/messages", json=body) as response:
            posted = await response.json()
        assert posted["ok"] and posted["channel"] == "C0GENERAL"
        await client.chat_postMessage(channel="C0GENERAL", thread_ts=posted["ts"], text="hello")
        async with session.get(f"{emu.url}/_emulator/threads/C0GENERAL/{posted['ts']}") as response:
            thread = await response.json()
        assert [m["text"] for m in thread["messages"]] == [f"<@{BOT}> hi", "hello"]
        async with session.get(emu.url + "/_emulator/channels") as response:
            channels = {c["id"]: c for c in (await response.json())["channels"]}
        assert channels["C0LEADS"]["members"] == ["U0ALICE", "U0CAROL", BOT]
        async with session.get(emu.url + "/_emulator/users") as response:
            assert "U0CAROL" in {u["id"] for u in (await response.json())["users"]}
        async with session.get(emu.url + "/_emulator/calls") as response:
            assert (await response.json())["calls"][-1]["method"] == "chat.postMessage"
        bad = {"user": "U0NOBODY", "channel": "C0GENERAL", "text": "x"}
        async with session.post(emu.url + "/_emulator/messages", json=bad) as response:
            assert (response.status, (await response.json())["error"]) == (404, "user_not_found")
        command = {"user": "U0BOB", "channel": "C0RANDOM", "command": "/recall", "text": "x"}
        async with session.post(emu.url + "/_emulator/commands", json=command) as response:
            assert (await response.json())["status"] == 200
    await emu.drain()
    assert sorted(e["type"] for e in receiver.events) == ["app_mention", "message", "message"]


# Packaging


def test_emulator_imports_nothing_from_the_app():
    code = (
        "import sys, emulator, emulator.__main__\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('app', 'memory', 'handlers')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_cli_prints_its_urls():
    command = [sys.executable, "-m", "emulator", "--port", "0", "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONUNBUFFERED": ""}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            second = process.stdout.readline()
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert re.match(r"Slack emulator at http://127\.0\.0\.1:\d+$", first.strip())
    assert second.strip().endswith("/api/")


async def test_users_conversations_lists_what_the_bot_may_see(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.add_channel("C0SECRET", "secret", is_private=True, members=["U0BOB"], bot_member=False)
    carol = await client.users_conversations(user="U0CAROL", types="private_channel,mpim,im")
    assert {c["id"] for c in carol["channels"]} == {"C0LEADS", "D0CAROL"}
    bob = await client.users_conversations(user="U0BOB", types="private_channel,mpim,im")
    assert {c["id"] for c in bob["channels"]} == {"D0BOB"}
    public = await client.users_conversations(user="U0BOB")
    assert {c["id"] for c in public["channels"]} == {"C0GENERAL", "C0RANDOM"}


async def test_press_button_posts_signed_block_actions(
    emu: SlackEmulator, receiver: Receiver
) -> None:
    command = await emu.send_command("U0ALICE", "C0GENERAL", "/recall", "hello")
    status = await emu.press_button("U0ALICE", command["response_url"], "recall_more", "v1")
    assert status == 200
    clicked = receiver.requests[-1]
    assert clicked.valid
    form = json.loads(clicked.form["payload"])
    assert form["type"] == "block_actions"
    assert form["actions"][0]["action_id"] == "recall_more"
    assert form["actions"][0]["value"] == "v1"
    assert form["response_url"] == command["response_url"]


async def test_users_list_pages_the_workspace_people_not_other_organisations(
    emu: SlackEmulator, client: AsyncWebClient
):
    for n in range(26):
        emu.add_user(f"U1{n:03d}", f"person{n}")
    emu.add_channel("C0PARTNER", "partner", members=["U0BOB"])
    emu.add_guest("U0GUEST", "gina", ["C0PARTNER"], single_channel=True)
    emu.add_external_user("U0EXT", "ext", "T0OTHER", ["C0PARTNER"])
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        page = await client.users_list(limit=10, cursor=cursor)
        pages.append(page["members"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    listed = {user["id"]: user for page in pages for user in page}
    assert [len(p) for p in pages] == [10, 10, 10, 1]  # 26, the 3 of the demo, the bot, the guest
    assert len(listed) == 31 and {"U0ALICE", BOT, "U1025"} <= set(listed)
    guest = listed["U0GUEST"]
    assert (guest["is_restricted"], guest["is_ultra_restricted"]) == (True, True)
    assert guest["team_id"] == emu.config.team_id
    # as in Slack, someone of another organisation is not listed; users.info still answers
    assert "U0EXT" not in listed
    assert (await client.users_info(user="U0EXT"))["user"]["team_id"] == "T0OTHER"


async def test_people_joining_and_changing_reach_the_app_as_events(
    emu: SlackEmulator, client: AsyncWebClient, receiver: Receiver
):
    await emu.join_workspace("U0NINA", "nina", real_name="Nina Novak", channels=["C0GENERAL"])
    await emu.change_user("U0BOB", is_restricted=True)
    await emu.change_user("U0CAROL", is_admin=False, real_name="Carol C.")
    await emu.drain()
    joined, bob, carol = receiver.events[-3:]
    assert joined["type"] == "team_join" and joined["user"]["real_name"] == "Nina Novak"
    assert joined["user"]["team_id"] == emu.config.team_id
    assert "U0NINA" in emu.workspace.channel("C0GENERAL").members
    assert bob["type"] == "user_change" and bob["user"]["is_restricted"] is True
    assert carol["user"]["is_admin"] is False and carol["user"]["real_name"] == "Carol C."
    assert (await client.users_info(user="U0BOB"))["user"]["is_restricted"] is True
    listed = {u["id"]: u for u in (await client.users_list())["members"]}
    assert listed["U0NINA"]["real_name"] == "Nina Novak"

    # the same over the control API, for curl and the playground
    async with aiohttp.ClientSession() as http:
        made_guest = await http.post(
            f"{emu.url}/_emulator/users",
            json={"id": "U0GIL", "name": "gil", "guest": True, "channels": ["C0RANDOM"]},
        )
        assert (await made_guest.json())["user"]["is_restricted"] is True
        promoted = await http.post(f"{emu.url}/_emulator/users/U0BOB", json={"is_admin": True})
        assert (await promoted.json())["user"]["is_admin"] is True
        bad = await http.post(f"{emu.url}/_emulator/users/U0BOB", json={"is_admin": "yes"})
        assert bad.status == 400 and (await bad.json())["error"] == "invalid_arguments"
        missing = await http.post(f"{emu.url}/_emulator/users/U0NOBODY", json={"deleted": True})
        assert missing.status == 404
    await emu.drain()
    assert [e["type"] for e in receiver.events[-2:]] == ["team_join", "user_change"]
    assert receiver.events[-1]["user"]["is_admin"] is True
