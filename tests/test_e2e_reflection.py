"""Reflection end to end: threads nobody asked Lore in go quiet, reflection (a model scripted
apart from the turns) writes notes from them, and later questions find those notes under the
same access rule as the messages they came from. Each test has a workspace of its own."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Usage
from redis.asyncio import Redis

from app.main import Lore
from app.reflection import Reflection
from app.reflection.budget import Budget
from emulator import SlackEmulator
from memory.audience import Audience
from memory.blocks import MemoryScope
from memory.edits import Insert
from memory.locks import RedisLeases
from memory.reflection_state import ReflectionState
from tests.conftest import REDIS_URL
from tests.fake_anthropic import FakeAnthropic, delay, error, reply, text, tool_use
from tests.harness import (
    archived,
    eventually,
    lore_settings,
    start_lore_on,
    system_text,
    tool_result_text,
    user_text,
)
from tests.test_app_home import home_of

BOT = "<@U0LORE>"
REFLECT = "claude-haiku-4-5"
QUIET = 0.4  # LORE_REFLECT_AFTER in these tests, seconds
EVERYTHING = MemoryScope.everything()
FALCON = "Falcon is funded with EUR 2M (Carol, in #plans)."
ORG_ONLY = "Layoffs are planned for Q3 (leadership only)."


def reflecting(tmp_path: Path, fake: FakeAnthropic, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "lore_reflect_after": QUIET,
        "lore_reflect_tokens_per_day": 2_000_000,
        "lore_reflect_model": REFLECT,
        **overrides,
    }
    return lore_settings(tmp_path, fake, **values)


@pytest.fixture
def emulator(team_emulator: SlackEmulator) -> SlackEmulator:
    """A workspace of its own (reflection's lease is per workspace, on shared Redis)."""
    return team_emulator


@pytest.fixture
async def lore(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> AsyncIterator[Lore]:
    running = await start_lore_on(emulator, reflecting(tmp_path, fake_llm))
    yield running
    await running.stop()


def note_add(said: str, channel: str, *ts: str, supersedes: str | None = None) -> Any:
    given: dict[str, Any] = {"text": said, "sources": [{"channel": channel, "ts": t} for t in ts]}
    if supersedes:
        given["supersedes"] = supersedes
    return tool_use("note_add", given)


async def thread(
    emulator: SlackEmulator, channel: str, *lines: tuple[str, str]
) -> list[dict[str, Any]]:
    """Post a thread: the first line is its parent, the others reply in it."""
    user, said = lines[0]
    parent = await emulator.post_message(user, channel, said)
    posted = [parent]
    for user, said in lines[1:]:
        posted.append(await emulator.post_message(user, channel, said, thread_ts=parent["ts"]))
    return posted


def reflection_of(lore: Lore) -> Reflection:
    assert lore.services.reflection is not None
    return lore.services.reflection


async def wait_notes(lore: Lore, team: str, count: int) -> list[Any]:
    async def enough() -> bool:
        return len(await lore.stores.notes.active(team)) >= count

    await eventually(enough, within=30)
    return await lore.stores.notes.active(team)


async def ask(
    emulator: SlackEmulator, fake: FakeAnthropic, user: str, channel: str, question: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask Lore (the turn searches once, then answers citing the first result); the reply and
    the turn's last model request."""
    fake.script(
        reply(tool_use("search_conversations", {"query": question})),
        reply(text("Here is what I found.", citations=[0])),
    )
    asked = await emulator.post_message(user, channel, f"{BOT} {question}")
    replies = await emulator.wait_for_reply(channel, asked["ts"], timeout=20)
    turns = [r for r in fake.requests if r.get("model") != REFLECT]
    return replies[0], turns[-1]


async def test_a_quiet_public_thread_becomes_a_note_that_another_channel_finds_and_cites(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    posted = await thread(
        emulator,
        "C0GENERAL",
        ("U0BOB", "Who looks after billing now that Eve moved to sales?"),
        ("U0CAROL", "Dana owns billing from this week on."),
    )
    fact = "Dana owns billing (since Eve moved to sales)."
    fake_llm.script_model(
        REFLECT, reply(note_add(fact, "C0GENERAL", posted[0]["ts"], posted[1]["ts"]))
    )
    [note] = await wait_notes(lore, team, 1)
    assert note.channel_id == "C0GENERAL" and note.channel_type == "channel"
    assert {s.ts for s in note.sources} == {posted[0]["ts"], posted[1]["ts"]}
    assert note.written_by.startswith("reflection:")
    [call] = fake_llm.requests_for(REFLECT)
    seen = user_text(call)
    assert "Dana owns billing from this week on." in seen and BOT not in seen
    assert call["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert call["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "<org" in system_text(call)

    answer, request = await ask(emulator, fake_llm, "U0ALICE", "C0RANDOM", "who owns billing?")
    assert fact in tool_result_text(request)
    links = str(answer)
    assert any(ts.replace(".", "") in links for ts in (posted[0]["ts"], posted[1]["ts"]))


async def test_a_private_channel_is_reflected_alone_and_its_note_stays_there(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    emulator.add_channel("C0PLANS", "plans", is_private=True, members=["U0ALICE", "U0CAROL"])
    secret = await thread(
        emulator,
        "C0PLANS",
        ("U0ALICE", "Falcon budget?"),
        ("U0CAROL", "Project Falcon's budget is two million euros."),
    )
    public = await thread(
        emulator,
        "C0GENERAL",
        ("U0BOB", "Where is the offsite?"),
        ("U0CAROL", "The offsite is in Lisbon in June."),
    )

    def script(request: dict[str, Any]) -> Any:
        if "Falcon" in user_text(request):
            return reply(
                note_add(FALCON, "C0PLANS", secret[1]["ts"]),
                tool_use("memory_insert", {"label": "org", "text": "Falcon is funded."}),
                note_add("Leak attempt.", "C0GENERAL", public[1]["ts"]),
            )
        return reply(note_add("The offsite is in Lisbon in June.", "C0GENERAL", public[1]["ts"]))

    fake_llm.respond_to_model(REFLECT, script)
    notes = await wait_notes(lore, team, 2)
    calls = fake_llm.requests_for(REFLECT)
    private_calls = [c for c in calls if "Falcon" in user_text(c)]
    assert private_calls and all("Lisbon" not in user_text(c) for c in private_calls)
    assert "private:C0PLANS" in system_text(private_calls[0])
    falcon = next(n for n in notes if n.text == FALCON)
    assert falcon.channel_id == "C0PLANS" and falcon.channel_type == "group"
    assert not [n for n in notes if n.text == "Leak attempt."]
    members = await lore.stores.notes.active(team, audience=Audience(frozenset({"C0PLANS"})))
    outsiders = await lore.stores.notes.active(team, audience=Audience(frozenset()))
    assert falcon.id in {n.id for n in members}
    assert falcon.id not in {n.id for n in outsiders}
    own = await lore.stores.blocks.get(team, "private:C0PLANS", EVERYTHING)
    org = await lore.stores.blocks.get(team, "org", EVERYTHING)
    assert own is not None and "Falcon is funded." in own.value
    assert org is not None and "Falcon" not in org.value

    _, in_public = await ask(emulator, fake_llm, "U0ALICE", "C0RANDOM", "Falcon budget")
    assert "EUR 2M" not in tool_result_text(in_public) + user_text(in_public)
    _, in_plans = await ask(emulator, fake_llm, "U0ALICE", "C0PLANS", "Falcon budget")
    assert FALCON in tool_result_text(in_plans)


async def test_conversations_outsiders_read_are_reflected_alone_and_without_org(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    """A public channel shared with another organisation, and a private channel with a guest,
    are each reflected alone and as their outsiders read them: never shown `org`, their block
    edits landing in their own block. #general, reflected beside them, is the control."""
    team = emulator.config.team_id
    await lore.stores.blocks.edit(team, "org", Insert(ORG_ONLY), scope=EVERYTHING)
    emulator.add_channel("C0PARTNER", "partner", members=["U0ALICE", "U0BOB"])
    emulator.set_ext_shared("C0PARTNER")
    emulator.add_channel("C0VENDOR", "vendor", is_private=True, members=["U0CAROL"])
    emulator.add_guest("U0GUEST", "guest", ["C0VENDOR"])
    partner = await thread(
        emulator,
        "C0PARTNER",
        ("U0ALICE", "When does the Acme integration ship?"),
        ("U0BOB", "The Acme integration ships in May."),
    )
    await thread(
        emulator,
        "C0VENDOR",
        ("U0CAROL", "When is the vendor contract up?"),
        ("U0GUEST", "Our contract renews in July."),
    )
    general = await thread(
        emulator,
        "C0GENERAL",
        ("U0BOB", "Where is the offsite?"),
        ("U0CAROL", "The offsite is in Lisbon in June."),
    )

    def script(request: dict[str, Any]) -> Any:
        said = user_text(request)
        if "Acme" in said:
            return reply(
                note_add("Acme ships in May.", "C0PARTNER", partner[1]["ts"]),
                tool_use("memory_insert", {"label": "org", "text": "Acme ships in May."}),
            )
        if "contract" in said:
            return reply(tool_use("memory_insert", {"label": "org", "text": "Renewal: July."}))
        return reply(
            note_add("The offsite is in Lisbon.", "C0GENERAL", general[1]["ts"]),
            tool_use("memory_insert", {"label": "org", "text": "Offsite: Lisbon."}),
        )

    fake_llm.respond_to_model(REFLECT, script)

    async def all_applied() -> bool:
        """Each of the three reflections made its block edit (wherever it landed)."""
        labels = ("org", "private:C0PARTNER", "private:C0VENDOR")
        blocks = [await lore.stores.blocks.get(team, label, EVERYTHING) for label in labels]
        values = "\n".join(block.value for block in blocks if block is not None)
        return all(said in values for said in ("Acme", "July", "Lisbon"))

    await eventually(all_applied, within=30)
    calls = {
        key: [c for c in fake_llm.requests_for(REFLECT) if key in user_text(c)]
        for key in ("Acme", "contract", "Lisbon")
    }
    for outside in ("Acme", "contract"):
        [call] = calls[outside]
        others = {"Acme", "contract", "Lisbon"} - {outside}
        assert not any(other in user_text(call) for other in others)
        assert "<org" not in system_text(call) and ORG_ONLY not in system_text(call)
    [control] = calls["Lisbon"]
    assert "<org" in system_text(control) and ORG_ONLY in system_text(control)
    org = await lore.stores.blocks.get(team, "org", EVERYTHING)
    assert org is not None and "Offsite: Lisbon." in org.value
    assert "Acme" not in org.value and "July" not in org.value
    for label, said in (("private:C0PARTNER", "Acme"), ("private:C0VENDOR", "July")):
        own = await lore.stores.blocks.get(team, label, EVERYTHING)
        assert own is not None and said in own.value
    acme = [n for n in await lore.stores.notes.active(team) if n.text == "Acme ships in May."]
    assert [n.channel_id for n in acme] == ["C0PARTNER"]


async def test_no_message_is_read_twice_and_a_reopened_thread_is_read_again(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    fake_llm.respond_to_model(REFLECT, lambda request: reply(text("Nothing durable here.")))
    posted = await thread(
        emulator, "C0GENERAL", ("U0BOB", "Standup moves to 9:30."), ("U0CAROL", "Noted, 9:30.")
    )
    await eventually(lambda: _calls(fake_llm, 1), within=30)
    one_more = await emulator.post_message(
        "U0ALICE", "C0GENERAL", "Fine by me.", thread_ts=posted[0]["ts"]
    )
    await archived(lore, team, 3)
    await _quiet_pass(lore)
    await _quiet_pass(lore)
    assert len(fake_llm.requests_for(REFLECT)) == 1  # one new message: not yet
    second = await emulator.post_message(
        "U0BOB", "C0GENERAL", "Same for me.", thread_ts=posted[0]["ts"]
    )
    await eventually(lambda: _calls(fake_llm, 2), within=30)
    again = user_text(fake_llm.requests_for(REFLECT)[1])
    assert "Fine by me." in again and "Same for me." in again
    assert "Standup moves to 9:30." not in again
    assert {one_more["ts"], second["ts"]} <= set(_read_ts(again))

    await reflection_of(lore).reopen(team, "C0GENERAL", posted[0]["ts"])
    await eventually(lambda: _calls(fake_llm, 3), within=30)
    whole = user_text(fake_llm.requests_for(REFLECT)[2])
    assert "Standup moves to 9:30." in whole and "Same for me." in whole
    await _quiet_pass(lore)
    assert len(fake_llm.requests_for(REFLECT)) == 3


async def test_a_failed_reflection_stores_nothing_and_is_retried(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    posted = await thread(
        emulator, "C0GENERAL", ("U0BOB", "Which region for the new DB?"), ("U0CAROL", "eu-west-1.")
    )
    fake_llm.script_model(
        REFLECT,
        error(500, "api_error", "Internal server error"),
        reply(note_add("The new database runs in eu-west-1.", "C0GENERAL", posted[1]["ts"])),
    )
    await eventually(lambda: _calls(fake_llm, 1), within=30)
    assert await lore.stores.notes.active(team) == []
    [note] = await wait_notes(lore, team, 1)
    assert note.text == "The new database runs in eu-west-1."
    first, second = fake_llm.requests_for(REFLECT)
    assert "eu-west-1." in user_text(first) and "eu-west-1." in user_text(second)
    await _quiet_pass(lore)
    assert len(fake_llm.requests_for(REFLECT)) == 2
    assert len(await lore.stores.notes.active(team)) == 1
    assert _sample(lore, "lore_reflection_calls_total", outcome="failed") == 1


async def test_a_restart_mid_reflection_neither_loses_nor_repeats_a_thread(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    team = emulator.config.team_id
    first = await start_lore_on(emulator, reflecting(tmp_path, fake_llm))
    try:
        posted = await thread(
            emulator, "C0GENERAL", ("U0BOB", "Who signs NDAs?"), ("U0CAROL", "Legal: Priya.")
        )
        fake_llm.script_model(REFLECT, delay(60, reply(text("never sent"))))
        await eventually(lambda: _calls(fake_llm, 1), within=30)
    finally:
        await first.stop()
    fake_llm.script_model(
        REFLECT, reply(note_add("Priya in Legal signs NDAs.", "C0GENERAL", posted[1]["ts"]))
    )
    second = await start_lore_on(emulator, reflecting(tmp_path, fake_llm))
    try:
        [note] = await wait_notes(second, team, 1)
        assert note.text == "Priya in Legal signs NDAs."
        await _quiet_pass(second)
        await _quiet_pass(second)
        calls = fake_llm.requests_for(REFLECT)
        assert len(calls) == 2 and all("Legal: Priya." in user_text(c) for c in calls)
        assert len(await second.stores.notes.active(team)) == 1
    finally:
        await second.stop()


async def test_the_token_budget_stops_reflection_for_the_day_and_app_home_says_so(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    team = emulator.config.team_id
    lore = await start_lore_on(
        emulator, reflecting(tmp_path, fake_llm, lore_reflect_tokens_per_day=50)
    )
    try:
        view = await home_of(emulator, "U0ALICE", "Reflection today")
        assert "Reflection today: 0 of 50 tokens." in str(view)
        fake_llm.respond_to_model(REFLECT, lambda request: reply(text("Nothing durable.")))
        await thread(emulator, "C0GENERAL", ("U0BOB", "Lunch?"), ("U0CAROL", "Pizza at noon."))
        await eventually(lambda: _calls(fake_llm, 1), within=30)
        await _quiet_pass(lore)
        assert _sample(lore, "lore_reflection_over_budget", team=team) == 1
        await thread(emulator, "C0GENERAL", ("U0BOB", "Release date?"), ("U0CAROL", "The 14th."))
        await archived(lore, team, 4)
        await _quiet_pass(lore)
        assert len(fake_llm.requests_for(REFLECT)) == 1
        view = await home_of(emulator, "U0ALICE", "stopped for the day")
        assert "spent today's 50 tokens" in str(view)
    finally:
        await lore.stop()


async def test_two_processes_never_reflect_one_workspace_at_once(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    running = {"now": 0, "most": 0}

    async def slow(request: dict[str, Any]) -> Any:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.3)  # the fake model's own latency, not a wait in the test
        running["now"] -= 1
        return reply(text("Nothing durable."))

    await reflection_of(lore).close()  # this process's own worker is out of the way
    fake_llm.respond_to_model(REFLECT, slow)
    for n in range(3):
        await thread(emulator, "C0GENERAL", ("U0BOB", f"Topic {n}?"), ("U0CAROL", f"Answer {n}."))
    await archived(lore, team, 6)
    clients = [Redis.from_url(REDIS_URL) for _ in range(2)]
    workers = [_another_process(lore, fake_llm, client) for client in clients]
    try:
        await _until_quiet(lore)
        await asyncio.gather(*(w.reflect_all() for w in workers))
        await asyncio.gather(*(w.reflect_all() for w in workers))
    finally:
        for worker, client in zip(workers, clients, strict=True):
            await worker.close()
            await client.aclose()
    assert running["most"] == 1
    assert len(fake_llm.requests_for(REFLECT)) == 1  # the three threads in one call, once


def _another_process(lore: Lore, fake: FakeAnthropic, redis: Redis, **limits: Any) -> Reflection:
    """A reflection worker like another process's: its own Redis client and model client."""
    own = reflection_of(lore)
    return Reflection(
        llm=fake.client(max_retries=0),
        limits=replace(own.limits, **limits),
        state=ReflectionState(lore.stores.engine),
        archive=lore.stores.archive,
        blocks=lore.stores.blocks,
        notes=lore.stores.notes,
        leases=RedisLeases(redis),
        outsiders=own.outsiders,
    )


async def _calls(fake: FakeAnthropic, count: int) -> bool:
    return len(fake.requests_for(REFLECT)) >= count


async def _quiet_pass(lore: Lore, quiet_for: float = QUIET) -> None:
    """Wait until everything archived so far is quiet, then for a whole reflection pass."""
    await _until_quiet(lore, quiet_for)
    await reflection_of(lore).next_pass()


async def _until_quiet(lore: Lore, quiet_for: float = QUIET) -> None:
    newest = time.time()
    await eventually(lambda: _after(newest + quiet_for), within=30)


async def _after(moment: float) -> bool:
    return time.time() > moment


def _read_ts(said: str) -> list[str]:
    return re.findall(r'ts="([0-9.]+)"', said)


def _sample(lore: Lore, name: str, **labels: str) -> float | None:
    return lore.services.metrics.registry.get_sample_value(name, labels)


async def test_reflection_sees_the_notes_a_thread_concerns_and_supersedes_one(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    first = await thread(
        emulator,
        "C0GENERAL",
        ("U0BOB", "Who is on call for payments this quarter?"),
        ("U0CAROL", "Payments on-call is Falcon team this quarter."),
    )
    fake_llm.script_model(
        REFLECT,
        reply(note_add("The Falcon team is on call for payments.", "C0GENERAL", first[1]["ts"])),
    )
    [old] = await wait_notes(lore, team, 1)
    later = await thread(
        emulator,
        "C0RANDOM",
        ("U0ALICE", "Change of plan for the payments on-call."),
        ("U0CAROL", "Payments on-call moves from Falcon to the Heron team."),
    )
    fake_llm.script_model(
        REFLECT,
        reply(
            note_add(
                "The Heron team is on call for payments (was Falcon).",
                "C0RANDOM",
                later[1]["ts"],
                supersedes=old.id,
            )
        ),
    )

    async def replaced() -> bool:
        return (await lore.stores.notes.get(team, old.id)).retracted_at is not None  # type: ignore[union-attr]

    await eventually(replaced, within=30)
    second = fake_llm.requests_for(REFLECT)[1]
    assert f'<note id="{old.id}"' in user_text(second)
    [now] = await lore.stores.notes.active(team)
    assert now.supersedes == old.id and now.channel_id == "C0RANDOM"


async def test_an_edited_source_sends_its_thread_back_to_reflection(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    posted = await thread(
        emulator,
        "C0GENERAL",
        ("U0BOB", "Where do we deploy from?"),
        ("U0CAROL", "We deploy from the main branch."),
    )
    fake_llm.script_model(
        REFLECT,
        reply(note_add("Deploys go out from the main branch.", "C0GENERAL", posted[1]["ts"])),
    )
    [old] = await wait_notes(lore, team, 1)
    fake_llm.script_model(
        REFLECT,
        reply(
            note_add(
                "Deploys go out from the release branch.",
                "C0GENERAL",
                posted[1]["ts"],
                supersedes=old.id,
            )
        ),
    )
    await emulator.edit_message("C0GENERAL", posted[1]["ts"], "We deploy from the release branch.")

    async def replaced() -> bool:
        return [n.text for n in await lore.stores.notes.active(team)] == [
            "Deploys go out from the release branch."
        ]

    await eventually(replaced, within=30)
    again = user_text(fake_llm.requests_for(REFLECT)[1])
    assert "We deploy from the release branch." in again and "Where do we deploy from?" in again
    assert f'<note id="{old.id}"' in again


async def test_threads_left_by_a_failed_call_are_read_at_the_next_pass(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team = emulator.config.team_id
    await reflection_of(lore).close()  # reflected by hand below, one thread per call
    one = await thread(emulator, "C0GENERAL", ("U0BOB", "Alpha?"), ("U0CAROL", "Alpha is done."))
    two = await thread(emulator, "C0GENERAL", ("U0BOB", "Beta?"), ("U0CAROL", "Beta ships."))
    await archived(lore, team, 4)
    fake_llm.script_model(
        REFLECT,
        reply(note_add("Project Alpha is finished.", "C0GENERAL", one[1]["ts"])),
        error(500, "api_error", "Internal server error"),
        reply(note_add("Project Beta is shipping.", "C0GENERAL", two[1]["ts"])),
    )
    async with Redis.from_url(REDIS_URL) as redis:
        worker = _another_process(lore, fake_llm, redis, threads_per_call=1)
        await _until_quiet(lore)
        await worker.reflect_team(team)
        assert [n.text for n in await lore.stores.notes.active(team)] == [
            "Project Alpha is finished."
        ]
        await worker.reflect_team(team)
        await worker.reflect_team(team)
        await worker.close()
    assert sorted(n.text for n in await lore.stores.notes.active(team)) == [
        "Project Alpha is finished.",
        "Project Beta is shipping.",
    ]
    calls = [user_text(c) for c in fake_llm.requests_for(REFLECT)]
    assert len(calls) == 3
    assert "Alpha is done." in calls[0] and not any("Alpha is done." in c for c in calls[1:])
    assert "Beta ships." in calls[1] and "Beta ships." in calls[2]


async def test_retrieval_only_mode_does_not_reflect(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    lore = await start_lore_on(
        emulator, lore_settings(tmp_path, None, lore_reflect_tokens_per_day=2_000_000)
    )
    try:
        assert lore.services.reflection is None
        assert lore.services.app_home is not None
        view = await home_of(emulator, "U0ALICE", "Memory")
        assert "Reflection" not in str(view)
    finally:
        await lore.stop()


async def test_the_budget_is_per_day_and_per_workspace(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    team, other = emulator.config.team_id, emulator.config.team_id + "X"
    day = ["2026-12-05"]
    budget = Budget(ReflectionState(lore.stores.engine), 1000, today=lambda: day[0])
    usage = Usage(input_tokens=600, output_tokens=100, cache_read_input_tokens=300)
    assert (await budget.spend(team, usage)).over
    assert (await budget.status(team)).spent == 1000
    assert not (await budget.status(other)).over
    day[0] = "2026-12-06"
    assert (await budget.status(team)).spent == 0
    await ReflectionState(lore.stores.engine).delete_team(other)
