"""Uninstall through signed HTTP: `app_uninstalled` / `tokens_revoked` forget one workspace only."""

from __future__ import annotations

from dataclasses import dataclass

from app.main import Lore
from emulator import SlackEmulator
from memory.archive import ArchivedMessage
from memory.audience import Audience
from memory.blocks import MemoryScope
from memory.edits import Insert
from memory.feedback import Verdict, Vote
from tests.conftest import new_team
from tests.harness import archived, eventually, settled

EVERYTHING = MemoryScope.everything()

BOT = "<@U0LORE>"
TEAM = "T0LORE"


@dataclass
class Holdings:
    """How much Lore keeps about one workspace."""

    archived: int
    org_versions: int
    conversations: int
    feedback: tuple[int, int]


async def holdings(lore: Lore, team_id: str) -> Holdings:
    stores = lore.stores
    return Holdings(
        archived=await stores.archive.count(team_id),
        org_versions=len(await stores.blocks.history(team_id, "org", EVERYTHING)),
        conversations=await stores.conversations.count(team_id),
        feedback=await stores.feedback.counts(team_id),
    )


async def teach_and_vote(lore: Lore, emulator: SlackEmulator) -> str:
    """Lore learns a fact in a thread and its reply gets a vote; the thread's ts."""
    said = await emulator.post_message("U0CAROL", "C0GENERAL", "Falcon owns the payments on-call.")
    asked = await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} remember: deploys freeze on Fridays"
    )
    reply = (await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20))[0]
    await emulator.press_message_button(
        "U0BOB", "C0GENERAL", reply["ts"], "lore_feedback", "helpful"
    )
    await archived(lore, TEAM, 3)
    await eventually(lambda: _has_feedback(lore, TEAM))
    assert said["ts"]
    return str(asked["ts"])


async def _has_feedback(lore: Lore, team_id: str) -> bool:
    return await lore.stores.feedback.counts(team_id) != (0, 0)


async def other_workspace(lore: Lore) -> str:
    """A second workspace with data in every store, written through the stores."""
    team_id = new_team()
    stores = lore.stores
    await stores.archive.add(
        [
            ArchivedMessage(
                team_id=team_id,
                channel_id="C0OTHER",
                channel_type="channel",
                ts="1700000000.000100",
                text="Falcon owns the payments on-call in the other workspace.",
                user_id="U0OTHER",
            )
        ]
    )
    await stores.blocks.current(team_id, EVERYTHING)
    await stores.blocks.edit(team_id, "org", Insert("Other workspace fact."), scope=EVERYTHING)
    conversation = await stores.conversations.open(team_id, "C0OTHER", "1700000000.000100")
    await stores.feedback.record(
        Vote(
            team_id=team_id,
            channel_id="C0OTHER",
            reply_ts="1700000001.000100",
            user_id="U0OTHER",
            verdict=Verdict.NOT_HELPFUL,
            conversation_id=conversation.id,
        )
    )
    return team_id


async def forgotten(lore: Lore, team_id: str) -> bool:
    return await holdings(lore, team_id) == Holdings(0, 0, 0, (0, 0))


async def test_app_uninstalled_deletes_that_workspace_and_nothing_of_another(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    thread_ts = await teach_and_vote(lore, emulator)
    other = await other_workspace(lore)
    before_other = await holdings(lore, other)
    assert before_other == Holdings(1, 2, 1, (0, 1))
    first_conversation = await lore.stores.conversations.find(TEAM, "C0GENERAL", thread_ts)
    assert first_conversation is not None

    assert await emulator.uninstall_app() == 200
    await eventually(lambda: forgotten(lore, TEAM))

    assert await holdings(lore, other) == before_other
    hits = await lore.stores.archive.search(other, "payments on-call", audience=Audience.everyone())
    assert [hit.message.channel_id for hit in hits] == ["C0OTHER"]
    assert not await lore.stores.archive.search(
        TEAM, "payments on-call", audience=Audience.everyone()
    )

    # A re-install starts clean: nothing learnt before comes back.
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} remember: lunch at noon")
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
    org = await lore.stores.blocks.get(TEAM, "org", EVERYTHING)
    assert org is not None and org.value == "lunch at noon" and org.version == 2
    again = await lore.stores.conversations.find(TEAM, "C0GENERAL", asked["ts"])
    assert again is not None and again.id != first_conversation.id
    assert await lore.stores.conversations.find(TEAM, "C0GENERAL", thread_ts) is None
    assert await lore.stores.feedback.counts(TEAM) == (0, 0)


async def test_tokens_revoked_with_the_bot_token_forgets_the_workspace(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    await teach_and_vote(lore, emulator)
    other = await other_workspace(lore)
    assert await emulator.revoke_tokens(bot=True, users=["U0ALICE"]) == 200
    await eventually(lambda: forgotten(lore, TEAM))
    assert await holdings(lore, other) == Holdings(1, 2, 1, (0, 1))


async def test_tokens_revoked_for_users_only_deletes_nothing(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    await teach_and_vote(lore, emulator)
    before = await holdings(lore, TEAM)
    assert before == Holdings(3, 2, 1, (1, 0))
    assert await emulator.revoke_tokens(bot=False, users=["U0ALICE"]) == 200
    await settled(emulator, lore)  # its listener finished and queued nothing
    handled = lore.services.metrics.registry.get_sample_value(
        "lore_events_handled_total", {"type": "tokens_revoked"}
    )
    assert handled == 1
    assert await holdings(lore, TEAM) == before
