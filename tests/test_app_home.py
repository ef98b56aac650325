"""The App Home through signed HTTP: blocks with versions and counts, admin edits in a modal,
reverts, refusals of non-admins (also forged), and excluding a channel from the archive."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.main import Lore
from emulator import SlackEmulator
from handlers.app_home import ADMINS_ONLY
from handlers.app_home_blocks import (
    EDIT_ACTION,
    EXCLUDE_ACTION,
    INPUT_CHARS,
    REVERT_ACTION,
    edit_modal,
    parse_edit,
    split_text,
)
from memory.archive import Audience
from memory.blocks import Block, MemoryScope
from memory.edits import Insert
from memory.feedback import Verdict
from tests.harness import archived_message, eventually, lore_settings, settled, start_lore_on

EVERYTHING = MemoryScope.everything()

TEAM = "T0LORE"


def view_text(view: dict[str, Any]) -> str:
    """Every text of a view, for assertions."""
    return json.dumps(view["blocks"], ensure_ascii=False)


def elements(view: dict[str, Any], action_id: str) -> list[dict[str, Any]]:
    found = []
    for block in view["blocks"]:
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if element.get("action_id") == action_id:
                found.append(element)
    return found


async def home_of(emulator: SlackEmulator, user: str, containing: str = "") -> dict[str, Any]:
    """Open the Home tab as `user`; the view Lore publishes (once it contains `containing`)."""
    await emulator.open_app_home(user)
    return await published(emulator, user, containing)


async def published(emulator: SlackEmulator, user: str, containing: str) -> dict[str, Any]:
    async def shown() -> bool:
        view = emulator.views.get(user)
        return view is not None and containing in view_text(view)

    await eventually(shown)
    return emulator.views[user]


async def modal_of(emulator: SlackEmulator, user: str) -> dict[str, Any]:
    async def opened() -> bool:
        return bool(emulator.view_interactions.modals(user))

    await eventually(opened)
    return emulator.view_interactions.modals(user)[-1]


async def org(lore: Lore) -> Block:
    found = await lore.stores.blocks.get(TEAM, "org", EVERYTHING)
    assert found is not None
    return found


async def test_home_lists_blocks_with_versions_and_counts(
    lore: Lore, emulator: SlackEmulator
) -> None:
    await lore.stores.blocks.edit(
        TEAM, "org", Insert("Deploys freeze on Fridays."), scope=EVERYTHING
    )
    posted = await emulator.post_message("U0BOB", "C0GENERAL", "the staging DB moved to eu-west")
    await archived_message(lore, TEAM, "C0GENERAL", posted["ts"])
    await lore.services.feedback.vote(
        team_id=TEAM,
        channel_id="C0GENERAL",
        thread_ts=None,
        reply_ts=posted["ts"],
        user_id="U0BOB",
        verdict=Verdict.HELPFUL,
    )

    view = await home_of(emulator, "U0BOB", "Deploys freeze")
    text = view_text(view)
    assert view["type"] == "home"
    assert "*org* · version 2 of 2" in text
    assert "*persona*" in text
    assert "*Archived messages*\\n1" in text
    assert "*Conversations*\\n0" in text
    assert "*Helpful answers*\\n1" in text and "*Not helpful*\\n0" in text
    assert "Backfill" in text
    assert not elements(view, EDIT_ACTION) and not elements(view, EXCLUDE_ACTION)

    admin_view = await home_of(emulator, "U0CAROL", "Deploys freeze")
    assert [e["value"] for e in elements(admin_view, EDIT_ACTION)] == ["persona", "org"]
    assert elements(admin_view, REVERT_ACTION)  # org has an earlier version
    assert elements(admin_view, EXCLUDE_ACTION)


async def test_admin_edits_a_block_in_a_modal_and_reverts_it(
    lore: Lore, emulator: SlackEmulator
) -> None:
    await lore.stores.blocks.edit(
        TEAM, "org", Insert("On-call rotates on Mondays."), scope=EVERYTHING
    )
    await home_of(emulator, "U0ALICE", "On-call rotates")

    await emulator.view_interactions.home_action("U0ALICE", EDIT_ACTION, value="org")
    modal = await modal_of(emulator, "U0ALICE")
    assert "On-call rotates on Mondays." in view_text(modal)
    answer = await emulator.view_interactions.submit(
        "U0ALICE", modal["id"], {"part_0": "On-call rotates on Tuesdays."}
    )
    assert answer["status"] == 200 and answer["closed"], answer
    edited = await org(lore)
    assert (edited.version, edited.value, edited.user_id) == (
        3,
        "On-call rotates on Tuesdays.",
        "U0ALICE",
    )
    view = await published(emulator, "U0ALICE", "Saved a new version.")
    assert "version 3 of 3" in view_text(view)

    # Revert to version 2: a new version 4 with version 2's text.
    options = elements(view, REVERT_ACTION)[0]["options"]
    second = next(o["value"] for o in options if json.loads(o["value"])["v"] == 2)
    await emulator.view_interactions.home_action("U0ALICE", REVERT_ACTION, selected_option=second)
    await published(emulator, "U0ALICE", "Restored *org* to version 2 as version 4")
    reverted = await org(lore)
    assert (reverted.version, reverted.value, reverted.operation) == (
        4,
        "On-call rotates on Mondays.",
        "revert",
    )
    history = await lore.stores.blocks.history(TEAM, "org", EVERYTHING)
    assert [b.version for b in history] == [1, 2, 3, 4]


async def test_an_edit_of_a_changed_block_shows_an_error_in_the_modal(
    lore: Lore, emulator: SlackEmulator
) -> None:
    await home_of(emulator, "U0CAROL", "version 1 of 1")
    await emulator.view_interactions.home_action("U0CAROL", EDIT_ACTION, value="org")
    modal = await modal_of(emulator, "U0CAROL")
    await lore.stores.blocks.edit(TEAM, "org", Insert("Someone else was faster."), scope=EVERYTHING)

    answer = await emulator.view_interactions.submit("U0CAROL", modal["id"], {"part_0": "Mine."})
    assert answer["status"] == 200 and not answer["closed"]
    assert answer["response"]["response_action"] == "errors"
    assert "version 2" in answer["response"]["errors"]["part_0"]
    assert (await org(lore)).value == "Someone else was faster."


async def test_edit_modal_over_socket_mode(emulator: SlackEmulator, tmp_path: Path) -> None:
    lore = await start_lore_on(emulator, lore_settings(tmp_path, None), socket_mode=True)
    try:
        await emulator.wait_for(lambda: emulator.socket.connected, timeout=10)
        await home_of(emulator, "U0ALICE", "version 1 of 1")
        await emulator.view_interactions.home_action("U0ALICE", EDIT_ACTION, value="org")
        modal = await modal_of(emulator, "U0ALICE")
        too_long = {"part_0": "x" * 3000, "part_1": "y" * 2500}
        refused = await emulator.view_interactions.submit("U0ALICE", modal["id"], too_long)
        assert refused["response"]["response_action"] == "errors"
        assert "over its limit of 5000" in refused["response"]["errors"]["part_0"]
        saved = await emulator.view_interactions.submit(
            "U0ALICE", modal["id"], {"part_0": "Short and sweet."}
        )
        assert saved["closed"]
        assert (await org(lore)).value == "Short and sweet."
    finally:
        await lore.stop()


async def test_non_admins_read_only_and_forged_changes_are_refused(
    lore: Lore, emulator: SlackEmulator
) -> None:
    posted = await emulator.post_message("U0BOB", "C0RANDOM", "lunch is at noon")
    await archived_message(lore, TEAM, "C0RANDOM", posted["ts"])
    view = await home_of(emulator, "U0BOB", "version 1 of 1")
    assert not elements(view, EDIT_ACTION)
    assert "Workspace admins and owners can edit" in view_text(view)

    # A forged Edit press opens no modal.
    await emulator.view_interactions.home_action("U0BOB", EDIT_ACTION, value="org", forge=True)
    await published(emulator, "U0BOB", ADMINS_ONLY)
    assert not emulator.view_interactions.modals()

    # A forged submission of an admin's modal is refused in the modal; nothing is stored.
    await home_of(emulator, "U0ALICE", "version 1 of 1")
    await emulator.view_interactions.home_action("U0ALICE", EDIT_ACTION, value="org")
    modal = await modal_of(emulator, "U0ALICE")
    answer = await emulator.view_interactions.submit(
        "U0BOB", modal["id"], {"part_0": "bob was here"}, view=modal
    )
    assert answer["response"]["errors"]["part_0"] == ADMINS_ONLY
    assert (await org(lore)).version == 1

    # Forged revert and exclusion change nothing either.
    emulator.views.pop("U0BOB")
    revert = json.dumps({"l": "org", "v": 1, "h": 1})
    await emulator.view_interactions.home_action(
        "U0BOB", REVERT_ACTION, selected_option=revert, forge=True
    )
    await published(emulator, "U0BOB", ADMINS_ONLY)
    emulator.views.pop("U0BOB")
    await emulator.view_interactions.home_action(
        "U0BOB", EXCLUDE_ACTION, selected_conversation="C0RANDOM", forge=True
    )
    await published(emulator, "U0BOB", ADMINS_ONLY)
    assert (await org(lore)).version == 1
    assert not await lore.services.app_home.is_excluded(TEAM, "C0RANDOM")
    assert await lore.stores.archive.get(TEAM, "C0RANDOM", posted["ts"]) is not None


async def test_excluding_a_channel_removes_its_messages_and_stops_archiving_it(
    lore: Lore, emulator: SlackEmulator
) -> None:
    archive = lore.stores.archive
    kept = await emulator.post_message("U0BOB", "C0GENERAL", "the kestrel release ships today")
    dropped = await emulator.post_message("U0BOB", "C0RANDOM", "the kestrel party is on Friday")
    reply = await emulator.post_message(
        "U0ALICE", "C0RANDOM", "kestrel cake too", thread_ts=dropped["ts"]
    )
    for channel, ts in (("C0GENERAL", kept["ts"]), ("C0RANDOM", dropped["ts"])):
        await archived_message(lore, TEAM, channel, ts)
    await archived_message(lore, TEAM, "C0RANDOM", reply["ts"])
    everyone = Audience.everyone()
    assert {
        h.message.channel_id for h in await archive.search(TEAM, "kestrel", audience=everyone)
    } == {
        "C0GENERAL",
        "C0RANDOM",
    }

    await home_of(emulator, "U0CAROL", "Every channel Lore is in is archived")
    await emulator.view_interactions.home_action(
        "U0CAROL", EXCLUDE_ACTION, selected_conversation="C0RANDOM"
    )
    view = await published(emulator, "U0CAROL", "2 archived messages removed")
    assert "Not archived: <#C0RANDOM>" in view_text(view)

    hits = await archive.search(TEAM, "kestrel party cake", audience=everyone)
    assert {h.message.channel_id for h in hits} == {"C0GENERAL"}
    collection = await archive._collection(TEAM, create=False)
    assert collection is not None
    keys = [f"C0RANDOM:{dropped['ts']}", f"C0RANDOM:{reply['ts']}", f"C0GENERAL:{kept['ts']}"]
    assert [r.id for r in await collection.get(keys)] == [keys[2]]

    later = await emulator.post_message("U0BOB", "C0RANDOM", "kestrel party moved to Saturday")
    after = await emulator.post_message("U0BOB", "C0GENERAL", "kestrel release notes are out")
    await archived_message(lore, TEAM, "C0GENERAL", after["ts"])
    await settled(emulator, lore)
    assert await archive.get(TEAM, "C0RANDOM", later["ts"]) is None
    assert await archive.count(TEAM) == 2


def test_long_blocks_are_split_into_inputs_and_joined_back() -> None:
    lines = [f"line {i} " + "x" * 90 for i in range(45)]  # ~4,500 characters
    value = "\n".join(lines)
    parts, joins = split_text(value, 5000)
    assert len(parts) == 2 and all(len(p) <= INPUT_CHARS for p in parts) and joins == ["\n"]
    block = Block("org", value, 7, 5000, datetime.now(UTC), None, None, "x")
    modal = edit_modal(block)
    values = {
        b["block_id"]: {
            "text": {"type": "plain_text_input", "value": b["element"]["initial_value"]}
        }
        for b in modal["blocks"]
        if b["type"] == "input"
    }
    assert parse_edit({**modal, "state": {"values": values}}) == ("org", 7, value)

    unbroken = "y" * 3500
    parts, joins = split_text(unbroken, 5000)
    assert parts == ["y" * 3000, "y" * 500] and joins == [""]
