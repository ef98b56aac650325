"""The people directory end to end (signed HTTP, the emulator, real Bolt): who a channel's
members are is decided from a few `users.list` pages, never one `users.info` per member, and
Slack's `user_change` / `team_join` events change what someone may see at once."""

from __future__ import annotations

import asyncio
import logging

import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from app.main import Lore
from emulator import SlackEmulator
from handlers.people import PeopleDirectory
from tests.harness import archived_message, eventually
from tests.test_e2e_access import ASK_IN_A_DM, ask
from tests.test_e2e_recall import all_text, final_answer

BOT = "<@U0LORE>"
TEAM = "T0LORE"
CROWD = [f"U9{n:04d}" for n in range(300)]


def calls(emulator: SlackEmulator, method: str) -> list[dict[str, object]]:
    return [args for called, args in emulator.calls if called == method]


async def recall(emulator: SlackEmulator, user: str, channel: str, question: str) -> str:
    """What `user` sees in the answer to `/recall question` asked in `channel`."""
    answered = len([r for r in emulator.command_responses if r["via"] == "response_url"])
    await emulator.send_command(user, channel, "/recall", question)
    return all_text(await final_answer(emulator, answered + 1))


def applied(caplog: pytest.LogCaptureFixture, event: str, user: str) -> int:
    """How many `event`s about `user` Lore has applied so far (its log line says so)."""
    return caplog.text.count(f"{event} {user} learnt")


async def learnt(caplog: pytest.LogCaptureFixture, event: str, user: str, count: int) -> None:
    """Wait until Lore has applied `count` `event`s about `user`."""

    async def done() -> bool:
        return applied(caplog, event, user) >= count

    await eventually(done)


async def test_a_big_channel_is_checked_from_a_few_directory_pages(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    for user in CROWD:
        emulator.add_user(user, user.lower())
    emulator.add_channel("C0CROWD", "crowd", members=CROWD)
    emulator.add_channel("C0MIXED", "mixed", members=CROWD)
    emulator.add_guest("U0GUEST", "gina", ["C0MIXED"])
    budget = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon budget is 3 million.")
    await archived_message(lore, TEAM, "C0GENERAL", budget["ts"])

    in_crowd = await ask(emulator, CROWD[7], "C0CROWD", f"{BOT} Falcon budget")
    assert "3 million" in in_crowd and ASK_IN_A_DM not in in_crowd  # only the organisation reads
    # control: the same crowd with one guest among them draws on the channel alone
    in_mixed = await ask(emulator, CROWD[7], "C0MIXED", f"{BOT} Falcon budget")
    assert "3 million" not in in_mixed and ASK_IN_A_DM in in_mixed

    members_pages = calls(emulator, "conversations.members")
    assert len(members_pages) == 4  # 2 pages of 200 for each channel of 301 or 302
    pages = calls(emulator, "users.list")
    assert 1 <= len(pages) <= 3 and all(page["limit"] == "200" for page in pages)
    assert calls(emulator, "users.info") == []  # not for the members, nor for the asker's name


async def test_someone_made_a_guest_loses_the_public_channels_at_once(
    lore_retrieval_only: Lore, emulator: SlackEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lore.people")
    lore = lore_retrieval_only
    emulator.add_channel("C0PLANS", "plans", members=["U0ALICE"])  # public; Bob is not in it
    budget = await emulator.post_message("U0ALICE", "C0PLANS", "Falcon budget is 3 million.")
    kickoff = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon kickoff is on Monday.")
    await archived_message(lore, TEAM, "C0PLANS", budget["ts"])
    await archived_message(lore, TEAM, "C0GENERAL", kickoff["ts"])
    before = await recall(emulator, "U0BOB", "C0GENERAL", "Falcon budget kickoff")
    assert "3 million" in before and "kickoff is on Monday" in before  # a member sees both

    await emulator.change_user("U0BOB", is_restricted=True)
    await learnt(caplog, "user_change", "U0BOB", 1)
    after = await recall(emulator, "U0BOB", "C0GENERAL", "Falcon budget kickoff")
    assert "kickoff is on Monday" in after and "3 million" not in after
    assert calls(emulator, "users.info") == []  # Bob's standing came from the directory
    # control: a full member who is not in #plans either still finds it
    assert "3 million" in await recall(emulator, "U0CAROL", "C0GENERAL", "Falcon budget")

    # and made a full member again, he sees it again
    await emulator.change_user("U0BOB", is_restricted=False)
    await learnt(caplog, "user_change", "U0BOB", 2)
    assert "3 million" in await recall(emulator, "U0BOB", "C0GENERAL", "Falcon budget")


async def test_a_guest_joining_a_channel_changes_its_answers_at_once(
    lore_retrieval_only: Lore, emulator: SlackEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lore.people")
    lore = lore_retrieval_only
    budget = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon budget is 3 million.")
    await archived_message(lore, TEAM, "C0GENERAL", budget["ts"])
    assert "3 million" in await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")

    await emulator.join_workspace("U0NINA", "nina", guest=True, channels=["C0RANDOM"])
    await learnt(caplog, "team_join", "U0NINA", 1)
    in_random = await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")
    assert "3 million" not in in_random and ASK_IN_A_DM in in_random
    # the newcomer is known without a users.info: her own question, her name, her standing
    in_dm = await ask(emulator, "U0NINA", "D0NINA", "Falcon budget")
    assert "3 million" not in in_dm
    assert calls(emulator, "users.info") == []
    # control: where only the organisation reads, the answer still draws on #general
    assert "3 million" in await ask(emulator, "U0BOB", "C0GENERAL", f"{BOT} Falcon budget")


async def test_a_member_of_another_organisation_is_looked_up_once(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    emulator.add_channel("C0PARTNER", "partner", members=["U0BOB"])
    emulator.add_channel("C0DESIGN", "design", members=["U0ALICE"])
    emulator.add_external_user("U0EXT", "ext", "T0OTHER", ["C0PARTNER", "C0DESIGN"])
    budget = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon budget is 3 million.")
    await archived_message(lore, TEAM, "C0GENERAL", budget["ts"])

    for asker, channel in (("U0BOB", "C0PARTNER"), ("U0ALICE", "C0DESIGN")):
        answer = await ask(emulator, asker, channel, f"{BOT} Falcon budget")
        assert "3 million" not in answer and ASK_IN_A_DM in answer
    # users.list does not list them (as in Slack): one users.info, whatever the channel
    assert [args["user"] for args in calls(emulator, "users.info")] == ["U0EXT"]
    # control: a channel of the organisation alone
    assert "3 million" in await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")


async def test_without_a_directory_a_channel_counts_as_having_outsiders(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    emulator.fail_method("users.list", "internal_error")  # the first read of the directory
    budget = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon budget is 3 million.")
    await archived_message(lore, TEAM, "C0GENERAL", budget["ts"])

    in_random = await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")
    assert "3 million" not in in_random and ASK_IN_A_DM in in_random
    assert len(calls(emulator, "users.list")) == 1  # not asked again at once
    # control: one person at a time is still looked up (users.info), and Bob, a member, finds
    # it in a DM
    assert "3 million" in await ask(emulator, "U0BOB", "D0BOB", "Falcon budget")
    looked_up = {args["user"] for args in calls(emulator, "users.info")}
    # Lore's own reply may be named too, depending on when its message event is archived
    assert looked_up - {"U0LORE"} == {"U0ALICE", "U0BOB"}


async def test_a_rate_limited_directory_page_is_waited_out(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    emulator.fail_method("users.list", "ratelimited", status=429, retry_after=1)
    budget = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon budget is 3 million.")
    await archived_message(lore, TEAM, "C0GENERAL", budget["ts"])

    in_random = await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")
    assert "3 million" in in_random and ASK_IN_A_DM not in in_random
    assert len(calls(emulator, "users.list")) == 2  # slack-sdk's retry handler asked again
    assert calls(emulator, "users.info") == []


async def test_the_directory_waits_out_rate_limits_itself_and_refreshes_in_the_background(
    emulator: SlackEmulator,
) -> None:
    """With a client that has no rate-limit retry handler of its own (the CLI's, say)."""
    client = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)
    assert not client.retry_handlers or all(
        not isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers
    )
    refreshes: list[asyncio.Task[None]] = []
    directory = PeopleDirectory(
        lambda job: refreshes.append(asyncio.create_task(job)), refresh_seconds=0.0
    )
    emulator.fail_method("users.list", "ratelimited", status=429, retry_after=1)
    people = await directory.everyone(client, TEAM)
    assert people is not None and people["U0BOB"].name == "Bob Brown"
    assert not people["U0BOB"].standing.outsider
    assert len(calls(emulator, "users.list")) == 2

    emulator.workspace.user("U0BOB").is_restricted = True  # no event: the next read tells
    stale = await directory.everyone(client, TEAM)  # answers at once, reads again behind
    assert stale is not None and not stale["U0BOB"].standing.outsider
    [refresh] = refreshes
    await refresh
    fresh = await directory.find(client, TEAM, "U0BOB")
    assert fresh is not None and fresh.standing.outsider
    assert len(calls(emulator, "users.list")) == 3


async def test_uninstalling_forgets_the_workspace_people_too(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    lore = lore_retrieval_only
    budget = await emulator.post_message("U0ALICE", "C0GENERAL", "Falcon budget is 3 million.")
    await archived_message(lore, TEAM, "C0GENERAL", budget["ts"])
    for _ in range(2):
        assert "3 million" in await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")
    assert len(calls(emulator, "users.list")) == 1  # read once, then known

    assert await emulator.uninstall_app() == 200

    async def forgotten() -> bool:
        return await lore.stores.archive.count(TEAM) == 0

    try:
        await eventually(forgotten)
    except TimeoutError:
        archive = lore.stores.archive
        left = [await archive.get(TEAM, *key) for key in await archive.key_page(TEAM, None, 20)]
        raise AssertionError(f"still archived after the forgetting: {left}") from None
    await lore.services.background.drain()  # the forgetting has ended: work is taken again
    await ask(emulator, "U0BOB", "C0RANDOM", f"{BOT} Falcon budget")
    assert len(calls(emulator, "users.list")) == 2  # read afresh
