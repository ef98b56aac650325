"""Finding notes on SQLite and PostgreSQL, by words and by meaning: only active notes, only those
whose channel the audience may read, within the search's filters."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.audience import Audience
from memory.embeddings import OnnxEmbedder
from memory.messages import SearchFilters
from memory.note_search import NoteSearch
from memory.notes import Notes, NoteSource
from tests.conftest import new_team

PUBLIC = "C0GENERAL"
PRIVATE = "G0LEADS"
EVERYONE = Audience.everyone()
ANY = SearchFilters()


async def _notes(engine: AsyncEngine, embedder: OnnxEmbedder) -> tuple[Notes, NoteSearch]:
    notes = Notes(engine, embedder)
    return notes, NoteSearch(notes, embedder)


async def test_words_and_meaning_find_a_note(
    any_engine: AsyncEngine, embedder: OnnxEmbedder
) -> None:
    notes, search = await _notes(any_engine, embedder)
    team = new_team()
    billing = await notes.add(
        team,
        text="Dana Reyes owns billing since the reorganisation.",
        sources=[NoteSource(PUBLIC, "1700000000.000100")],
        channel_type="channel",
        written_by="conversation:c1",
    )
    await notes.add(
        team,
        text="The office plants are watered on Mondays.",
        sources=[NoteSource(PUBLIC, "1700000000.000200")],
        channel_type="channel",
        written_by="conversation:c1",
    )
    by_words = await search.search(
        team, "who owns billing?", audience=EVERYONE, filters=ANY, limit=5
    )
    assert by_words[0][0].id == billing.id
    by_meaning = await search.search(
        team,
        "person responsible for invoices and payments",
        audience=EVERYONE,
        filters=ANY,
        limit=1,
    )
    assert [n.id for n, _ in by_meaning] == [billing.id]
    assert await search.search(new_team(), "billing", audience=EVERYONE, filters=ANY, limit=5) == []


async def test_retracted_notes_are_never_found(
    any_engine: AsyncEngine, embedder: OnnxEmbedder
) -> None:
    notes, search = await _notes(any_engine, embedder)
    team = new_team()
    old = await notes.add(
        team,
        text="Ann owns billing.",
        sources=[NoteSource(PUBLIC, "1.1")],
        channel_type="channel",
        written_by="x",
    )
    new = await notes.add(
        team,
        text="Dana owns billing.",
        sources=[NoteSource(PUBLIC, "2.1")],
        channel_type="channel",
        written_by="x",
        supersedes=old.id,
    )
    found = await search.search(team, "who owns billing", audience=EVERYONE, filters=ANY, limit=5)
    assert [n.id for n, _ in found] == [new.id]
    await notes.retract(team, new.id, reason="wrong", by="admin:U1")
    assert (
        await search.search(team, "who owns billing", audience=EVERYONE, filters=ANY, limit=5) == []
    )


async def test_a_private_note_is_found_only_by_its_readers(
    any_engine: AsyncEngine, embedder: OnnxEmbedder
) -> None:
    notes, search = await _notes(any_engine, embedder)
    team = new_team()
    secret = await notes.add(
        team,
        text="The acquisition of Initech closes in June.",
        sources=[NoteSource(PRIVATE, "1.1")],
        channel_type="group",
        written_by="x",
    )
    members = Audience(frozenset({PRIVATE}), public=True)
    public_room = Audience(frozenset({PUBLIC}), public=True)
    query = "when does the Initech acquisition close"
    found = await search.search(team, query, audience=members, filters=ANY, limit=5)
    assert [n.id for n, _ in found] == [secret.id]
    assert await search.search(team, query, audience=public_room, filters=ANY, limit=5) == []
    elsewhere = SearchFilters(channels=frozenset({PUBLIC}))
    assert await search.search(team, query, audience=members, filters=elsewhere, limit=5) == []
    by_user = SearchFilters(user_id="U1")
    assert await search.search(team, query, audience=members, filters=by_user, limit=5) == []
    await notes.set_channel_type(team, PRIVATE, "channel")  # made public: everyone may read it
    found = await search.search(team, query, audience=public_room, filters=ANY, limit=5)
    assert [n.id for n, _ in found] == [secret.id]


async def test_words_and_vectors_are_read_in_one_statement(
    any_engine: AsyncEngine, embedder: OnnxEmbedder
) -> None:
    """A search reads the word matches and the candidates' vectors in one round trip; a note
    found by a word alone (a made-up name, meaningless to the model) still ranks first."""
    notes, search = await _notes(any_engine, embedder)
    team = new_team()
    named = await notes.add(
        team,
        text="Project Zorblaxite ships from the Quentford depot.",
        sources=[NoteSource(PUBLIC, "1.1")],
        channel_type="channel",
        written_by="x",
    )
    await notes.add(
        team,
        text="The office plants are watered on Mondays.",
        sources=[NoteSource(PUBLIC, "2.1")],
        channel_type="channel",
        written_by="x",
    )
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(any_engine.sync_engine, "before_cursor_execute", seen)
    try:
        found = await search.search(team, "Zorblaxite", audience=EVERYONE, filters=ANY, limit=5)
    finally:
        event.remove(any_engine.sync_engine, "before_cursor_execute", seen)
    assert [n.id for n, _ in found][:1] == [named.id]
    reading = [s for s in statements if "note_vectors" in s]
    assert len(reading) == 1
    words = "notes_fts" if any_engine.dialect.name == "sqlite" else "to_tsquery"
    assert words in reading[0]
    assert [s for s in statements if words in s] == reading
