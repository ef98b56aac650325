"""Notes end to end (signed HTTP, the emulator, the fake Messages API): a note kept in one thread
is found in another conversation as a search result on its source message, which the answer
cites; a private channel's note is found only by the channel's members (a public channel and a
non-member are the controls); deleting every source retracts a note, a partial deletion does
not; an edited source sends its thread back to be read again. The App Home shows each viewer
the notes of conversations they may read (an admin outside a private channel is the control),
with a Retract button for admins only (a forged press is refused, also for a note not shown);
the JSON API lists notes with their sources. A channel made private takes its notes along, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from app.api import enable_api
from app.main import Lore
from emulator import SlackEmulator
from handlers.app_home import ADMINS_ONLY
from handlers.app_home_blocks import RETRACT_NOTE_ACTION
from memory.audience import Audience
from memory.notes import Note, NoteSource
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import archived_message, eventually, settled
from tests.test_app_home import elements, home_of, published, view_text
from tests.test_e2e_channel_privacy import workspace  # noqa: F401 - a fixture on both databases

BOT = "<@U0LORE>"
TEAM = "T0LORE"


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks a request hands back to the model."""
    return [b for b in request["messages"][-1]["content"] if b.get("type") == "tool_result"]


def search_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    [result] = tool_results(request)
    content = result["content"]
    return [b for b in content if b["type"] == "search_result"] if isinstance(content, list) else []


async def said(lore: Lore, emulator: SlackEmulator, user: str, channel: str, words: str) -> Any:
    """`user` says `words` in `channel`; the message once archived."""
    posted = await emulator.post_message(user, channel, words)
    await archived_message(lore, TEAM, channel, posted["ts"])
    return posted


async def keep_note(
    emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    user: str,
    channel: str,
    note: str,
    sources: list[dict[str, str]],
) -> dict[str, Any]:
    """`user` asks Lore in `channel` to remember; the model calls note_add; its tool_result."""
    fake_llm.script(
        reply(tool_use("note_add", {"text": note, "sources": sources})), reply(text("Noted."))
    )
    asked = await emulator.post_message(user, channel, f"{BOT} please remember this")
    await emulator.wait_for_reply(channel, asked["ts"], timeout=20)
    [result] = tool_results(fake_llm.requests[-1])
    return result


async def ask_searching(
    emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    user: str,
    channel: str,
    query: str,
    *,
    cite: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`user` asks in `channel`; the model searches `query` and answers, citing the first
    result when `cite`. The request that carried the search results, and the posted answer."""
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": query})),
        reply(text("Here is what I found.", citations=[0]) if cite else text("I found nothing.")),
    )
    start = len(fake_llm.requests)
    asked = await emulator.post_message(user, channel, f"{BOT} {query}?")
    answer = (await emulator.wait_for_reply(channel, asked["ts"], timeout=20))[0]
    return fake_llm.requests[start + 1], answer


def found_above_its_source(results: list[dict[str, Any]], note: Note) -> bool:
    """Whether the note is among the search results, before the message it was learned from."""
    titles = [r["title"] for r in results]
    at = next((i for i, t in enumerate(titles) if t.startswith(f"Note ({note.id})")), None)
    source = [i for i, r in enumerate(results) if r["source"] == note.sources[0].permalink]
    return at is not None and at == min(source)


async def active(lore: Lore) -> list[Note]:
    return await lore.stores.notes.active(TEAM)


async def test_a_note_kept_in_one_thread_is_found_and_its_source_cited_from_another_channel(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    source = await said(
        lore, emulator, "U0BOB", "C0GENERAL", "From today Dana Reyes runs billing, Ann moved on."
    )
    result = await keep_note(
        emulator,
        fake_llm,
        "U0ALICE",
        "C0GENERAL",
        "Dana Reyes owns billing.",
        [{"link": source["permalink"]}],
    )
    assert not result.get("is_error"), result
    [note] = await active(lore)
    assert note.channel_id == "C0GENERAL" and note.channel_type == "channel"
    assert [(s.ts, s.permalink) for s in note.sources] == [(source["ts"], source["permalink"])]
    assert note.written_by.startswith("conversation:")

    request, answer = await ask_searching(
        emulator, fake_llm, "U0CAROL", "C0RANDOM", "who is in charge of billing"
    )
    results = search_results(request)
    first = results[0]  # the note ranks above the message it was learned from
    assert first["title"].startswith(f"Note ({note.id}) learned from")
    assert first["content"][0]["text"].startswith("Dana Reyes owns billing.")
    assert first["source"] == source["permalink"]
    assert source["permalink"] in answer["text"]  # the answer cites the message, not the note
    assert f"/{note.id}" not in answer["text"]


async def test_a_private_channel_note_is_found_there_and_by_members_in_a_dm_only(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    source = await said(
        lore, emulator, "U0CAROL", "C0LEADS", "Board approved the Initech acquisition for June."
    )
    refused = await keep_note(  # a public channel's turn may not learn from a private channel
        emulator,
        fake_llm,
        "U0ALICE",
        "C0GENERAL",
        "Initech acquisition closes in June.",
        [{"channel": "C0LEADS", "ts": source["ts"]}],
    )
    assert refused["is_error"] and "can be read from here" in refused["content"]
    assert await active(lore) == []
    kept = await keep_note(
        emulator,
        fake_llm,
        "U0ALICE",
        "C0LEADS",
        "Initech acquisition closes in June.",
        [{"channel": "C0LEADS", "ts": source["ts"]}],
    )
    assert not kept.get("is_error"), kept
    [note] = await active(lore)
    assert note.channel_type == "group"
    query = "when does the Initech acquisition close"
    in_channel, _ = await ask_searching(emulator, fake_llm, "U0CAROL", "C0LEADS", query)
    assert found_above_its_source(search_results(in_channel), note)
    member_dm, _ = await ask_searching(emulator, fake_llm, "U0ALICE", "D0ALICE", query)
    assert found_above_its_source(search_results(member_dm), note)
    private = ("Board approved the Initech", "Initech acquisition closes in June", "C0LEADS")
    for user, channel in (("U0ALICE", "C0GENERAL"), ("U0BOB", "D0BOB")):
        request, _ = await ask_searching(emulator, fake_llm, user, channel, query, cite=False)
        shown = json.dumps(tool_results(request))  # the public questions asked here may be found
        assert not any(words in shown for words in private), (user, channel)
    # control: the same question where the channel's members read the answer finds it
    in_channel, _ = await ask_searching(emulator, fake_llm, "U0ALICE", "C0LEADS", query)
    assert "Initech acquisition closes in June." in json.dumps(tool_results(in_channel))


async def test_deleting_every_source_retracts_a_note_and_a_partial_deletion_does_not(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    first = await said(lore, emulator, "U0BOB", "C0GENERAL", "The staging database is pg-stage-2.")
    second = await said(lore, emulator, "U0BOB", "C0GENERAL", "Confirmed: staging runs pg-stage-2.")
    both = [{"link": first["permalink"]}, {"link": second["permalink"]}]
    result = await keep_note(
        emulator, fake_llm, "U0ALICE", "C0GENERAL", "Staging database: pg-stage-2.", both
    )
    assert not result.get("is_error"), result
    [note] = await active(lore)

    await emulator.delete_message("C0GENERAL", first["ts"])
    await settled(emulator, lore)
    assert [n.id for n in await active(lore)] == [note.id]  # one source is left
    request, _ = await ask_searching(emulator, fake_llm, "U0CAROL", "C0RANDOM", "staging database")
    assert search_results(request)[0]["source"] == second["permalink"]  # the source still there

    await emulator.delete_message("C0GENERAL", second["ts"])

    async def retracted() -> bool:
        return await active(lore) == []

    await eventually(retracted)
    taken_back = await lore.stores.notes.get(TEAM, note.id)
    assert taken_back is not None and taken_back.retracted_at is not None
    assert taken_back.retracted_reason == "every source message was deleted"
    scraped, _ = await lore.services.metrics.exposition("text/plain")
    assert 'lore_notes_retracted_total{why="deletion"} 1.0' in scraped.decode()
    request, _ = await ask_searching(
        emulator, fake_llm, "U0CAROL", "C0RANDOM", "staging database", cite=False
    )
    assert "pg-stage-2" not in json.dumps(tool_results(request))


async def test_an_edited_source_sends_its_thread_back_to_be_read_again(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    reopened: list[tuple[str, str, str]] = []

    async def reopen(team_id: str, channel_id: str, thread_ts: str) -> None:
        reopened.append((team_id, channel_id, thread_ts))

    lore.services.ingest.reopen_thread = reopen
    parent = await said(lore, emulator, "U0BOB", "C0GENERAL", "Who runs the on-call rota?")
    answer = await emulator.post_message(
        "U0CAROL", "C0GENERAL", "Priya runs the on-call rota.", thread_ts=parent["ts"]
    )
    await archived_message(lore, TEAM, "C0GENERAL", answer["ts"])
    other = await said(lore, emulator, "U0BOB", "C0GENERAL", "Lunch is at noon.")
    result = await keep_note(
        emulator,
        fake_llm,
        "U0ALICE",
        "C0GENERAL",
        "Priya runs the on-call rota.",
        [{"channel": "C0GENERAL", "ts": answer["ts"]}],
    )
    assert not result.get("is_error"), result

    await emulator.edit_message("C0GENERAL", other["ts"], "Lunch is at one.")  # control
    await emulator.edit_message("C0GENERAL", answer["ts"], "Sam runs the on-call rota now.")
    await settled(emulator, lore)
    assert reopened == [(TEAM, "C0GENERAL", parent["ts"])]


async def two_notes(lore: Lore, emulator: SlackEmulator) -> tuple[Note, Note]:
    """A note learned in #general and one learned in the private #leadership."""
    public = await said(lore, emulator, "U0BOB", "C0GENERAL", "The kestrel release ships Friday.")
    private = await said(lore, emulator, "U0CAROL", "C0LEADS", "Kestrel budget is 40k.")
    notes = lore.stores.notes
    shipped = await notes.add(
        TEAM,
        text="Kestrel ships on Friday.",
        sources=[NoteSource("C0GENERAL", public["ts"], public["permalink"])],
        channel_type="channel",
        written_by="conversation:c1",
    )
    budget = await notes.add(
        TEAM,
        text="The kestrel budget is 40k.",
        sources=[NoteSource("C0LEADS", private["ts"], private["permalink"])],
        channel_type="group",
        written_by="conversation:c2",
    )
    return shipped, budget


async def test_app_home_lists_notes_to_who_may_read_them_and_only_admins_retract_them(
    lore: Lore, emulator: SlackEmulator
) -> None:
    shipped, budget = await two_notes(lore, emulator)
    view = await home_of(emulator, "U0CAROL", "The kestrel budget is 40k.")  # an admin
    assert "Kestrel ships on Friday." in view_text(view)
    assert shipped.sources[0].permalink in view_text(view)  # learned from: its message
    assert {e["value"] for e in elements(view, RETRACT_NOTE_ACTION)} == {shipped.id, budget.id}

    member = await home_of(emulator, "U0BOB", "Kestrel ships on Friday.")  # not an admin
    assert "40k" not in view_text(member)  # never a private channel's note
    assert not elements(member, RETRACT_NOTE_ACTION)
    await emulator.view_interactions.home_action(
        "U0BOB", RETRACT_NOTE_ACTION, value=shipped.id, forge=True
    )
    await published(emulator, "U0BOB", ADMINS_ONLY)
    assert [n.id for n in await active(lore)] == [budget.id, shipped.id]

    emulator.add_user("U0DAVE", "dave", real_name="Dave Diaz", is_admin=True)  # not in #leadership
    outside = await home_of(emulator, "U0DAVE", "Kestrel ships on Friday.")
    assert "40k" not in view_text(outside)  # an admin too sees only what they may read
    assert {e["value"] for e in elements(outside, RETRACT_NOTE_ACTION)} == {shipped.id}
    await emulator.view_interactions.home_action(
        "U0DAVE", RETRACT_NOTE_ACTION, value=budget.id, forge=True
    )
    await published(emulator, "U0DAVE", "cannot be seen from here")
    assert [n.id for n in await active(lore)] == [budget.id, shipped.id]

    await emulator.view_interactions.home_action("U0CAROL", RETRACT_NOTE_ACTION, value=shipped.id)
    view = await published(emulator, "U0CAROL", "Retracted the note")
    assert {e["value"] for e in elements(view, RETRACT_NOTE_ACTION)} == {budget.id}
    retracted = await lore.stores.notes.get(TEAM, shipped.id)
    assert retracted is not None and retracted.retracted_by == "admin:U0CAROL"
    assert [n.id for n in await active(lore)] == [budget.id]


async def test_the_json_api_lists_notes_with_their_sources(
    lore: Lore, emulator: SlackEmulator
) -> None:
    shipped, budget = await two_notes(lore, emulator)
    await lore.stores.notes.retract(TEAM, shipped.id, reason="moved", by="admin:U0ALICE")
    enable_api(lore)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{lore.url}/api/teams/{TEAM}/notes") as response:
            body = await response.json()
        async with session.get(f"{lore.url}/api/teams/{TEAM}/notes?retracted=1") as response:
            history = await response.json()
        async with session.get(f"{lore.url}/api/teams/{TEAM}/search?q=kestrel+budget") as response:
            found = await response.json()
    [listed] = body["notes"]
    assert listed["id"] == budget.id and listed["channel_type"] == "group"
    assert listed["sources"] == [
        {
            "channel_id": "C0LEADS",
            "ts": budget.sources[0].ts,
            "permalink": budget.sources[0].permalink,
        }
    ]
    assert listed["retracted_at"] is None
    assert {n["id"]: n["retracted_reason"] for n in history["notes"]} == {
        budget.id: None,
        shipped.id: "moved",
    }
    assert found["results"][0]["note"]["id"] == budget.id


async def test_a_note_follows_its_channel_made_private_on_sqlite_and_postgresql(
    workspace: tuple[Lore, SlackEmulator],  # noqa: F811 - the fixture imported above
) -> None:
    lore, emulator = workspace
    team = emulator.config.team_id
    posted = await emulator.post_message("U0ALICE", "C0PLANS", "Falcon: the budget sheet is final.")
    message = await archived_message(lore, team, "C0PLANS", posted["ts"])
    note = await lore.stores.notes.add(
        team,
        text="Project Falcon's budget is two million euros.",
        sources=[NoteSource("C0PLANS", message.ts, message.permalink)],
        channel_type="channel",
        written_by="conversation:c1",
    )
    bob = Audience(frozenset({"D0BOB"}), public=True)
    alice = Audience(frozenset({"D0ALICE", "C0PLANS"}), public=True)

    async def notes_for(audience: Audience) -> list[str]:
        hits = await lore.stores.archive.search(team, "Falcon budget", audience=audience)
        return [hit.note.id for hit in hits if hit.note is not None]

    assert await notes_for(bob) == [note.id]  # public so far
    await emulator.convert_channel("C0PLANS", private=True, user="U0ALICE")

    async def private_now() -> bool:
        stored = await lore.stores.notes.get(team, note.id)
        return stored is not None and stored.channel_type == "group"

    await eventually(private_now)
    assert await notes_for(bob) == []  # Bob is not a member
    assert await notes_for(alice) == [note.id]  # control: a member still finds it


async def test_notes_count_with_the_memory_edits_of_a_turn_and_errors_are_readable(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    source = await said(lore, emulator, "U0BOB", "C0GENERAL", "Release train leaves at 16:00.")
    private = await said(lore, emulator, "U0CAROL", "C0LEADS", "Release budget is frozen.")
    link = {"link": source["permalink"]}
    calls = [
        tool_use("memory_insert", {"label": "org", "text": "Releases leave at 16:00."}),
        *(
            tool_use("note_add", {"text": f"Release fact {n}.", "sources": [link]})
            for n in range(4)
        ),
        tool_use("note_add", {"text": "One more.", "sources": [link]}),
    ]
    fake_llm.script(reply(*calls), reply(text("Saved.")))
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} learn these")
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
    results = tool_results(fake_llm.requests[-1])
    assert [r.get("is_error", False) for r in results] == [False] * 5 + [True]
    assert "at most 5 memory edits per turn" in results[5]["content"]
    assert len(await active(lore)) == 4

    kept = (await active(lore))[0]
    two_channels = [link, {"channel": "C0LEADS", "ts": private["ts"]}]
    fake_llm.script(
        reply(
            tool_use("note_add", {"text": "Mixed.", "sources": two_channels}),
            tool_use("note_retract", {"id": "Nnothing", "reason": "wrong"}),
            tool_use("note_retract", {"id": kept.id, "reason": "the train moved"}),
        ),
        reply(text("Done.")),
    )
    asked = await emulator.post_message("U0CAROL", "C0LEADS", f"{BOT} tidy up")
    await emulator.wait_for_reply("C0LEADS", asked["ts"], timeout=20)
    mixed, unknown, retracted = tool_results(fake_llm.requests[-1])
    assert (
        mixed["is_error"] and "one channel per note: add one note per channel" in mixed["content"]
    )
    assert unknown["is_error"] and "there is no note 'Nnothing'" in unknown["content"]
    assert not retracted.get("is_error") and "the train moved" in retracted["content"]
    assert kept.id not in {n.id for n in await active(lore)}
