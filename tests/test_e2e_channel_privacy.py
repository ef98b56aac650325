"""Channel privacy is current, end to end: Slack's events about a channel (made private,
deleted, archived, shared) change what Lore finds for whom while the event is handled, on
SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.main import Lore
from emulator import EmulatorConfig, SlackEmulator
from memory.audience import Audience
from tests.conftest import POSTGRES_URL, new_team, postgres_engine_or_skip
from tests.harness import archived_message, eventually, lore_settings, start_lore_on
from tests.test_e2e_recall import all_text, final_answer

BOT = "<@U0LORE>"
SECRET = "Project Falcon's budget is two million euros."


@pytest.fixture(params=["sqlite", "postgres"])
async def workspace(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Lore, SlackEmulator]]:
    """Retrieval-only Lore on SQLite or PostgreSQL, and an emulated workspace of its own."""
    overrides: dict[str, str] = {}
    if request.param == "postgres":
        await (await postgres_engine_or_skip()).dispose()
        overrides["database_url"] = POSTGRES_URL
    emulator = SlackEmulator(
        EmulatorConfig(events_url=None, team_id=new_team(), retry_delays=(0.3, 0.3, 0.3))
    )
    await emulator.start()
    lore = await start_lore_on(emulator, lore_settings(tmp_path, None, **overrides))
    emulator.add_channel("C0PLANS", "plans", members=["U0ALICE", "U0CAROL"])
    yield lore, emulator
    await lore.stop()
    await emulator.stop()


async def recall(emulator: SlackEmulator, user: str, question: str) -> str:
    """What `user` sees in the answer to `/recall question` (asked from #general)."""
    answered = len([r for r in emulator.command_responses if r["via"] == "response_url"])
    await emulator.send_command(user, "C0GENERAL", "/recall", question)
    return all_text(await final_answer(emulator, answered + 1))


async def answer(emulator: SlackEmulator, user: str, channel: str, question: str) -> str:
    asked = await emulator.post_message(user, channel, question)
    replies = await emulator.wait_for_reply(channel, asked["ts"], timeout=20)
    return str(replies[0]["text"])


async def test_a_channel_made_private_is_unreachable_for_non_members_at_once(
    workspace: tuple[Lore, SlackEmulator],
) -> None:
    lore, emulator = workspace
    team = emulator.config.team_id
    said = await emulator.post_message("U0ALICE", "C0PLANS", SECRET)
    await archived_message(lore, team, "C0PLANS", said["ts"])
    assert "two million" in await recall(emulator, "U0BOB", "Falcon budget")  # public so far

    await emulator.convert_channel("C0PLANS", private=True, user="U0ALICE")

    async def private_now() -> bool:
        stored = await lore.stores.archive.get(team, "C0PLANS", said["ts"])
        return stored is not None and stored.channel_type == "group"

    await eventually(private_now)
    # Bob is not a member: neither a public answer nor his /recall shows it any more
    public_answer = await answer(emulator, "U0BOB", "C0GENERAL", f"{BOT} the Falcon budget?")
    assert "found nothing" in public_answer and "two million" not in public_answer
    assert "two million" not in await recall(emulator, "U0BOB", "Falcon budget")
    # control: members still find it, in /recall and in a DM
    assert "two million" in await recall(emulator, "U0CAROL", "Falcon budget")
    assert "two million" in await answer(emulator, "U0ALICE", "D0ALICE", "Falcon budget?")


async def test_a_channel_made_public_again_reaches_everyone(
    workspace: tuple[Lore, SlackEmulator],
) -> None:
    lore, emulator = workspace
    team = emulator.config.team_id
    emulator.add_channel("C0DRAFTS", "drafts", is_private=True, members=["U0ALICE"])
    said = await emulator.post_message("U0ALICE", "C0DRAFTS", SECRET)
    await archived_message(lore, team, "C0DRAFTS", said["ts"])
    assert "two million" not in await recall(emulator, "U0BOB", "Falcon budget")

    await emulator.convert_channel("C0DRAFTS", private=False, user="U0ALICE")

    async def public_now() -> bool:
        stored = await lore.stores.archive.get(team, "C0DRAFTS", said["ts"])
        return stored is not None and stored.channel_type == "channel"

    await eventually(public_now)
    assert "two million" in await recall(emulator, "U0BOB", "Falcon budget")


async def test_a_deleted_channel_leaves_the_archive_and_an_archived_one_stays(
    workspace: tuple[Lore, SlackEmulator],
) -> None:
    lore, emulator = workspace
    team = emulator.config.team_id
    emulator.add_channel("C0OLD", "old-project", members=["U0ALICE", "U0BOB"])
    kept = await emulator.post_message("U0BOB", "C0OLD", "The Heron pilot ran in Lyon.")
    gone = await emulator.post_message("U0CAROL", "C0PLANS", "The Heron pilot costs 40k.")
    await archived_message(lore, team, "C0OLD", kept["ts"])
    await archived_message(lore, team, "C0PLANS", gone["ts"])

    archived_record = await emulator.archive_channel("C0OLD", user="U0ALICE")
    deleted_record = await emulator.delete_channel("C0PLANS", user="U0CAROL")
    await emulator.drain()
    assert archived_record is not None and archived_record.delivered
    assert deleted_record is not None and deleted_record.delivered
    assert deleted_record.event_type == "channel_deleted"

    async def deleted() -> bool:
        return await lore.stores.archive.get(team, "C0PLANS", gone["ts"]) is None

    await eventually(deleted)
    hits = await lore.stores.archive.search(team, "Heron pilot", audience=Audience.everyone())
    assert [hit.message.ts for hit in hits] == [kept["ts"]]  # archived channels stay readable
    assert "Lyon" in await recall(emulator, "U0CAROL", "Heron pilot")


async def test_a_channel_shared_with_another_organisation_draws_only_on_itself_at_once(
    workspace: tuple[Lore, SlackEmulator],
) -> None:
    lore, emulator = workspace
    team = emulator.config.team_id
    general = await emulator.post_message("U0BOB", "C0GENERAL", "Heron launch is on Monday.")
    plans = await emulator.post_message("U0ALICE", "C0PLANS", "Heron partner deck is ready.")
    await archived_message(lore, team, "C0GENERAL", general["ts"])
    await archived_message(lore, team, "C0PLANS", plans["ts"])

    before = await answer(emulator, "U0ALICE", "C0PLANS", f"{BOT} Heron launch")
    assert "launch is on Monday" in before and "partner deck" in before  # Lore knows the channel

    shared = await emulator.share_channel("C0PLANS", "T0PARTNER")
    await emulator.drain()  # the event is handled: Lore answered it
    assert shared is not None and [a.status for a in shared.attempts] == [200]
    while_shared = await answer(emulator, "U0ALICE", "C0PLANS", f"{BOT} Heron launch")
    assert "partner deck" in while_shared and "launch is on Monday" not in while_shared

    unshared = await emulator.unshare_channel("C0PLANS", "T0PARTNER")
    await emulator.drain()
    assert unshared is not None and unshared.delivered
    assert unshared.body["event"]["is_ext_shared"] is False
    after = await answer(emulator, "U0ALICE", "C0PLANS", f"{BOT} Heron launch")
    assert "launch is on Monday" in after and "partner deck" in after
