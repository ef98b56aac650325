"""The notes store on SQLite and PostgreSQL: sources in one channel, supersede and retract keep
history, the audience a writer is handed decides which notes it may write, deletions of every
source retract a note."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.audience import Audience
from memory.notes import RETRACTED_BY_DELETION, NoteError, Notes, NoteSource
from tests.conftest import new_team

PUBLIC = "C0GENERAL"
PRIVATE = "G0SECRET"


async def test_add_get_and_active_carry_the_sources(any_engine: AsyncEngine) -> None:
    notes = Notes(any_engine)
    team = new_team()
    sources = [NoteSource(PUBLIC, "1.000100", "https://x/p1"), NoteSource(PUBLIC, "1.000200")]
    note = await notes.add(
        team,
        text=" Billing is owned by Dana. ",
        sources=sources,
        channel_type="channel",
        written_by="conversation:c1",
    )
    assert note.text == "Billing is owned by Dana."
    assert note.channel_id == PUBLIC and note.sources == tuple(sources)
    assert await notes.get(team, note.id) == note
    assert [n.id for n in await notes.active(team)] == [note.id]
    assert await notes.get(new_team(), note.id) is None  # another workspace never sees it


async def test_sources_in_two_channels_are_refused(any_engine: AsyncEngine) -> None:
    notes = Notes(any_engine)
    team = new_team()
    with pytest.raises(NoteError, match="one channel per note: add one note per channel"):
        await notes.add(
            team,
            text="fact",
            sources=[NoteSource(PUBLIC, "1.1"), NoteSource(PRIVATE, "1.2")],
            channel_type="channel",
            written_by="conversation:c1",
        )
    with pytest.raises(NoteError, match="at least one source"):
        await notes.add(team, text="fact", sources=[], channel_type="channel", written_by="x")
    assert await notes.active(team) == []
    assert notes.counts.rejected == 2


async def test_supersede_retracts_the_old_note_once(any_engine: AsyncEngine) -> None:
    notes = Notes(any_engine)
    team = new_team()
    old = await notes.add(
        team,
        text="Billing: Ann",
        sources=[NoteSource(PUBLIC, "1.1")],
        channel_type="channel",
        written_by="conversation:c1",
    )
    new = await notes.add(
        team,
        text="Billing: Dana",
        sources=[NoteSource(PUBLIC, "2.1")],
        channel_type="channel",
        written_by="reflection:r1",
        supersedes=old.id,
    )
    assert new.supersedes == old.id
    kept = await notes.get(team, old.id)
    assert kept is not None and kept.retracted_at is not None
    assert kept.retracted_reason == "superseded" and kept.retracted_by == "reflection:r1"
    assert [n.id for n in await notes.active(team)] == [new.id]
    with pytest.raises(NoteError, match="already retracted or superseded"):
        await notes.add(
            team,
            text="Billing: Eve",
            sources=[NoteSource(PUBLIC, "3.1")],
            channel_type="channel",
            written_by="x",
            supersedes=old.id,
        )
    assert [n.id for n in await notes.active(team)] == [new.id]  # the refused one left nothing
    assert len(await notes.history(team)) == 2


async def test_retract_keeps_history_and_returns_none_for_unknown(any_engine: AsyncEngine) -> None:
    notes = Notes(any_engine)
    team = new_team()
    note = await notes.add(
        team,
        text="fact",
        sources=[NoteSource(PUBLIC, "1.1")],
        channel_type="channel",
        written_by="conversation:c1",
    )
    assert await notes.retract(team, "Nnope", reason="wrong", by="admin:U1") is None
    gone = await notes.retract(team, note.id, reason="wrong", by="admin:U1")
    assert gone is not None and gone.retracted_reason == "wrong" and gone.retracted_by == "admin:U1"
    assert await notes.active(team) == []
    assert await notes.citing(team, PUBLIC, "1.1") == []
    assert (await notes.history(team))[0].id == note.id


async def test_audience_decides_who_may_write_and_read(any_engine: AsyncEngine) -> None:
    notes = Notes(any_engine)
    team = new_team()
    public_room = Audience(frozenset({PUBLIC}), public=True)
    members = Audience(frozenset({PRIVATE}), public=True)
    with pytest.raises(NoteError, match="cannot be read from here"):
        await notes.add(
            team,
            text="secret",
            sources=[NoteSource(PRIVATE, "1.1")],
            channel_type="group",
            written_by="conversation:c1",
            audience=public_room,
        )
    secret = await notes.add(
        team,
        text="secret",
        sources=[NoteSource(PRIVATE, "1.1")],
        channel_type="group",
        written_by="conversation:c2",
        audience=members,
    )
    assert await notes.active(team, audience=public_room) == []  # control: members see it
    assert [n.id for n in await notes.active(team, audience=members)] == [secret.id]
    with pytest.raises(NoteError, match="cannot be seen from here"):
        await notes.retract(team, secret.id, reason="no", by="x", audience=public_room)
    with pytest.raises(NoteError, match="cannot be seen from here"):
        await notes.add(
            team,
            text="public",
            sources=[NoteSource(PUBLIC, "2.1")],
            channel_type="channel",
            written_by="x",
            supersedes=secret.id,
            audience=public_room,
        )
    assert [n.id for n in await notes.active(team)] == [secret.id]
    await notes.set_channel_type(team, PRIVATE, "channel")  # made public: public readers see it
    assert [n.id for n in await notes.active(team, audience=public_room)] == [secret.id]


async def test_every_source_deleted_retracts_a_partial_deletion_does_not(
    any_engine: AsyncEngine,
) -> None:
    notes = Notes(any_engine)
    team = new_team()
    two = await notes.add(
        team,
        text="two sources",
        sources=[NoteSource(PUBLIC, "1.1"), NoteSource(PUBLIC, "1.2")],
        channel_type="channel",
        written_by="conversation:c1",
    )
    one = await notes.add(
        team,
        text="one source",
        sources=[NoteSource(PUBLIC, "1.2")],
        channel_type="channel",
        written_by="conversation:c1",
    )
    assert {n.id for n in await notes.citing(team, PUBLIC, "1.2")} == {two.id, one.id}
    assert [n.id for n in await notes.source_deleted(team, PUBLIC, "1.2")] == [one.id]
    assert [n.id for n in await notes.active(team)] == [two.id]
    retracted = await notes.source_deleted(team, PUBLIC, "1.1")
    assert [n.id for n in retracted] == [two.id]
    assert retracted[0].retracted_reason == RETRACTED_BY_DELETION
    assert await notes.active(team) == []


async def test_delete_team_leaves_other_workspaces(any_engine: AsyncEngine) -> None:
    notes = Notes(any_engine)
    gone, kept = new_team(), new_team()
    for team in (gone, kept):
        await notes.add(
            team,
            text="fact",
            sources=[NoteSource(PUBLIC, "1.1")],
            channel_type="channel",
            written_by="x",
        )
    await notes.delete_team(gone)
    assert await notes.history(gone) == []
    assert len(await notes.active(kept)) == 1
