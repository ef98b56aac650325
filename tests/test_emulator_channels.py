"""The emulator's channel administration: the events Slack sends when a channel is made private
or public, shared, archived or deleted, signed like every delivery, and what the Web API then
says of the channel."""

from __future__ import annotations

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from emulator import SlackEmulator
from tests.test_emulator import Receiver, api_error, client, emu, receiver  # noqa: F401


async def test_made_private_then_public_over_the_control_api(
    emu: SlackEmulator,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    client: AsyncWebClient,  # noqa: F811
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{emu.url}/_emulator/channels/C0GENERAL/private"
        async with session.post(url, json={"user": "U0ALICE"}) as response:
            assert response.status == 200
        async with session.post(url, json={"user": "U0ALICE"}) as response:
            assert response.status == 400  # already private
    await emu.drain()

    (event,) = receiver.events
    assert all(r.valid for r in receiver.requests)
    assert event["type"] == "message" and event["subtype"] == "channel_convert_to_private"
    assert event["channel"] == "C0GENERAL" and event["channel_type"] == "group"
    info = await client.conversations_info(channel="C0GENERAL")
    assert info["channel"]["is_private"] is True
    mine = await client.users_conversations(user="U0BOB", types="private_channel")
    assert "C0GENERAL" in [c["id"] for c in mine["channels"]]

    await emu.convert_channel("C0GENERAL", private=False, user="U0ALICE")
    await emu.drain()
    assert receiver.events[-1]["subtype"] == "channel_convert_to_public"
    assert receiver.events[-1]["channel_type"] == "channel"


async def test_shared_archived_and_deleted_channels_send_slacks_events(
    emu: SlackEmulator,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    client: AsyncWebClient,  # noqa: F811
) -> None:
    await emu.share_channel("C0RANDOM", "T0PARTNER")
    await emu.unshare_channel("C0RANDOM", "T0PARTNER")
    await emu.archive_channel("C0RANDOM", user="U0ALICE")
    await emu.delete_channel("C0LEADS", user="U0CAROL")
    emu.add_channel("C0HIDDEN", "hidden", is_private=True, members=["U0BOB"], bot_member=False)
    assert await emu.delete_channel("C0HIDDEN", user="U0BOB") is None  # the bot is not in it
    await emu.drain()

    kinds = [(e["type"], e.get("subtype")) for e in receiver.events]
    assert kinds == [
        ("channel_shared", None),
        ("channel_unshared", None),
        ("message", "channel_archive"),
        ("channel_archive", None),
        ("group_deleted", None),
    ]
    assert receiver.events[0]["connected_team_id"] == "T0PARTNER"
    assert receiver.events[1]["is_ext_shared"] is False
    assert (await client.conversations_info(channel="C0RANDOM"))["channel"]["is_archived"]
    assert (await api_error(client.conversations_info(channel="C0LEADS"))).response[
        "error"
    ] == "channel_not_found"
