"""Edits and deletions in Slack reach the archive: new text replaces old, deleted text is gone."""

from __future__ import annotations

from typing import Any

from app.main import Lore
from emulator import SlackEmulator
from tests.harness import archived_message, eventually, settled


async def test_edit_replaces_the_archived_text(lore: Lore, emulator: SlackEmulator) -> None:
    posted = await emulator.post_message("U0BOB", "C0GENERAL", "The launch is on the 14th.")
    archived = await archived_message(lore, "T0LORE", "C0GENERAL", posted["ts"])
    assert archived.user_name == "Bob Brown"  # from the people directory (events carry only ids)
    await emulator.edit_message("C0GENERAL", posted["ts"], "The launch moved to the 21st.")

    async def edited() -> bool:
        message = await lore.stores.archive.get("T0LORE", "C0GENERAL", posted["ts"])
        return message is not None and message.text == "The launch moved to the 21st."

    await eventually(edited)
    message = await lore.stores.archive.get("T0LORE", "C0GENERAL", posted["ts"])
    assert message is not None and message.user_name == "Bob Brown"


async def test_deletions_remove_messages_and_thread_parents(
    lore: Lore, emulator: SlackEmulator
) -> None:
    parent = await emulator.post_message("U0BOB", "C0GENERAL", "Secret plan: rename the product.")
    reply = await emulator.post_message("U0CAROL", "C0GENERAL", "Love it.", thread_ts=parent["ts"])
    lone = await emulator.post_message("U0BOB", "C0GENERAL", "Oops, wrong channel.")
    for ts in (parent["ts"], reply["ts"], lone["ts"]):
        await archived_message(lore, "T0LORE", "C0GENERAL", ts)
    await emulator.delete_message("C0GENERAL", lone["ts"])
    await emulator.delete_message("C0GENERAL", parent["ts"])

    async def gone() -> bool:
        lone_left = await lore.stores.archive.get("T0LORE", "C0GENERAL", lone["ts"])
        parent_left = await lore.stores.archive.get("T0LORE", "C0GENERAL", parent["ts"])
        return lone_left is None and parent_left is None

    await eventually(gone)
    assert await lore.stores.archive.get("T0LORE", "C0GENERAL", reply["ts"]) is not None


async def test_a_parent_turned_into_a_tombstone_is_removed(
    lore: Lore, emulator: SlackEmulator
) -> None:
    parent = await emulator.post_message("U0BOB", "C0GENERAL", "Draft numbers: 12% churn.")
    await archived_message(lore, "T0LORE", "C0GENERAL", parent["ts"])
    tombstone = {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": "C0GENERAL",
        "channel_type": "channel",
        "ts": "1795600000.000001",
        "message": {
            "type": "message",
            "subtype": "tombstone",
            "text": "This message was deleted.",
            "user": "USLACKBOT",
            "ts": parent["ts"],
            "thread_ts": parent["ts"],
        },
    }
    assert await emulator.deliver_event(tombstone) == 200

    async def gone() -> bool:
        return await lore.stores.archive.get("T0LORE", "C0GENERAL", parent["ts"]) is None

    await eventually(gone)


def edited_event(ts: str, text: str, event_ts: str) -> dict[str, Any]:
    """Slack's `message_changed` for an edit of message `ts` made at `event_ts`."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": "C0GENERAL",
        "channel_type": "channel",
        "ts": event_ts,
        "event_ts": event_ts,
        "message": {"type": "message", "user": "U0BOB", "text": text, "ts": ts},
    }


async def test_changes_delivered_out_of_order_leave_slacks_latest(
    lore: Lore, emulator: SlackEmulator
) -> None:
    edited = await emulator.post_message("U0BOB", "C0GENERAL", "The beta ships on day 0.")
    deleted = await emulator.post_message("U0BOB", "C0GENERAL", "The beta ships on day 1.")
    untouched = await emulator.post_message("U0BOB", "C0GENERAL", "The beta ships on day 2.")
    for posted in (edited, deleted, untouched):
        await archived_message(lore, "T0LORE", "C0GENERAL", posted["ts"])
    # Slack's deliveries arrive in any order: here each change after a later one
    later, earlier = "1795700000.000002", "1795700000.000001"
    newer_edit = edited_event(edited["ts"], "The beta ships on day 10.", later)
    assert await emulator.deliver_event(newer_edit) == 200
    older_edit = edited_event(edited["ts"], "The beta ships on day 9.", earlier)
    assert await emulator.deliver_event(older_edit) == 200
    deletion = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": "C0GENERAL",
        "channel_type": "channel",
        "deleted_ts": deleted["ts"],
        "ts": later,
        "event_ts": later,
    }
    assert await emulator.deliver_event(deletion) == 200
    older = edited_event(deleted["ts"], "The beta ships on day 11.", earlier)
    assert await emulator.deliver_event(older) == 200
    await settled(emulator, lore)

    archived = await lore.stores.archive.get("T0LORE", "C0GENERAL", edited["ts"])
    assert archived is not None and archived.text == "The beta ships on day 10."
    assert await lore.stores.archive.get("T0LORE", "C0GENERAL", deleted["ts"]) is None
    control = await lore.stores.archive.get("T0LORE", "C0GENERAL", untouched["ts"])
    assert control is not None and control.text == "The beta ships on day 2."
