"""Tests of re-embedding: an archive opened with another embedder fills its new collection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import open_stores
from emulator import SlackEmulator
from memory.archive import Archive, ArchivedMessage, build_where, to_metadata
from memory.audience import Audience
from memory.embeddings import INT8_NAME, MODEL_NAME, OnnxEmbedder, load_embedder
from memory.locks import LocalLeases
from memory.messages import SearchFilters, indexed_text
from memory.note_search import NoteSearch
from memory.notes import Notes, NoteSource
from memory.reembed import Reembedding
from tests.conftest import MODEL_DIR, new_team
from tests.harness import lore_settings, settled, start_lore_on
from tests.vector_checks import nearest_record

BASE = 1_700_000_000
EVERYONE = Audience.everyone()
OUTSIDER = Audience(frozenset())  # public channels only
MEMBER = Audience(frozenset({"G1"}))
# Each query shares no (non-stop) word with its message: only the dense index finds it.
MIGRATION_QUERY = "which weekend will the data store upgrade happen"
VACATION_QUERY = "what is the deadline for asking for holiday leave"


def message(team: str, channel: str, n: int, text: str, kind: str = "channel") -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team,
        channel_id=channel,
        channel_type=kind,
        ts=f"{BASE + n * 3600}.000100",
        text=text,
        user_id="U1",
        permalink=f"https://x.slack.com/archives/{channel}/p{n}",
    )


def corpus(team: str) -> list[ArchivedMessage]:
    return [
        message(
            team, "C1", 1, "The production database migration is scheduled for Saturday night."
        ),
        message(team, "C1", 2, "Lunch today is tacos at the new place downtown."),
        message(team, "C2", 3, "Our quarterly sales numbers beat the forecast by ten percent."),
        message(team, "C2", 4, "The CI pipeline keeps failing on the flaky login test."),
        message(team, "G1", 5, "Remember to submit vacation requests before December.", "group"),
    ]


class GatedEmbedder:
    """An embedder whose call number `hold_at` waits until released (re-embedding held
    mid-batch)."""

    def __init__(self, inner: OnnxEmbedder, hold_at: int) -> None:
        self.name = inner.name
        self.dim = inner.dim
        self._inner = inner
        self._calls = 0
        self._hold_at = hold_at
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self._calls += 1
        if self._calls == self._hold_at:
            self.entered.set()
            self.release.wait(timeout=60)
        return self._inner.embed(texts)


@pytest.fixture(scope="module")
def int8(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    embedder = load_embedder(MODEL_DIR, tmp_path_factory.mktemp("models"), precision="int8")
    assert isinstance(embedder, OnnxEmbedder) and embedder.name == INT8_NAME
    return embedder


@pytest.fixture
async def team_archived(
    tmp_path: Path, embedder: OnnxEmbedder, any_engine: AsyncEngine
) -> AsyncIterator[str]:
    """A workspace archived with the fp32 embedder in tmp_path/chroma (then closed)."""
    assert embedder.name == MODEL_NAME
    team = new_team()
    fp32 = await Archive.open_embedded(tmp_path / "chroma", embedder, any_engine)
    try:
        await fp32.add(corpus(team))
        assert await fp32.vector_count(team) == len(corpus(team))
    finally:
        await fp32.close()
    yield team


async def keys(archive: Archive, team: str, query: str, audience: Audience) -> list[str]:
    hits = await archive.search(team, query, audience=audience, limit=3)
    return [hit.message.key for hit in hits]


async def test_switching_to_int8_reembeds_the_archive(
    tmp_path: Path, int8: OnnxEmbedder, any_engine: AsyncEngine, team_archived: str
) -> None:
    team = team_archived
    migration, lunch, *_, vacation = corpus(team)
    archive = await Archive.open_embedded(tmp_path / "chroma", int8, any_engine)
    reembedding = Reembedding(archive, page=2, batch=2)  # several pages and batches
    try:
        assert await archive.vector_count(team) == 0
        assert await archive.count(team) == len(corpus(team))
        # Before: the lexical half finds every message by its words, the dense half nothing.
        assert (await keys(archive, team, "tacos downtown", EVERYONE))[0] == lunch.key
        assert await keys(archive, team, MIGRATION_QUERY, EVERYONE) == []

        task = reembedding.start(team)
        assert task is not None
        assert await task == len(corpus(team))

        assert await archive.vector_count(team) == await archive.count(team)
        assert reembedding.embedded == len(corpus(team))
        assert (await keys(archive, team, MIGRATION_QUERY, EVERYONE))[0] == migration.key
        # The same ids and metadata `add` writes: a private channel stays private.
        stored = await archive._read(team, lambda c: c.get([m.key for m in corpus(team)]), [])
        assert {r.id: dict(r.metadata) for r in stored} == {
            m.key: dict(to_metadata(m)) for m in corpus(team)
        }
        assert (await keys(archive, team, VACATION_QUERY, MEMBER))[0] == vacation.key
        assert vacation.key not in await keys(archive, team, VACATION_QUERY, OUTSIDER)
        assert (await keys(archive, team, MIGRATION_QUERY, OUTSIDER))[0] == migration.key
        vector = (await asyncio.to_thread(int8.embed, [VACATION_QUERY]))[0]
        where = build_where(SearchFilters(), OUTSIDER)
        outside = await archive._nearest(team, vector, 10, where=where)
        assert ("G1", vacation.ts) not in outside and ("C1", migration.ts) in outside

        assert await reembedding.run(team) == 0  # nothing left: a later start does nothing
    finally:
        await reembedding.close()
        await archive.close()


async def test_an_edit_or_deletion_during_reembedding_wins(
    tmp_path: Path, int8: OnnxEmbedder, any_engine: AsyncEngine, team_archived: str
) -> None:
    team = team_archived
    migration, lunch, *_ = corpus(team)
    gated = GatedEmbedder(int8, hold_at=1)
    archive = await Archive.open_embedded(tmp_path / "chroma", gated, any_engine)
    reembedding = Reembedding(archive, batch=len(corpus(team)))
    try:
        task = reembedding.start(team)
        assert task is not None
        await asyncio.to_thread(gated.entered.wait, 60)  # embedding the texts read before
        edited = "Moved: the production database migration now runs on Sunday morning."
        edit = asyncio.create_task(archive.update_text(team, "C1", migration.ts, edited))
        deletion = asyncio.create_task(archive.delete(team, "C1", lunch.ts))
        for _ in range(100):  # let the edit take the team lock before re-embedding goes on
            if archive._lock(team).locked():
                break
            await asyncio.sleep(0)
        assert archive._lock(team).locked()
        gated.release.set()
        assert await edit and await deletion
        assert await task == len(corpus(team)) - 2

        stored = {
            r.id: r
            for r in await archive._read(team, lambda c: c.get([migration.key, lunch.key]), [])
        }
        assert set(stored) == {migration.key}  # the deleted message did not come back
        current = await archive.get(team, "C1", migration.ts)
        assert current is not None and current.text == edited
        now = await nearest_record(archive, team, int8, indexed_text(current))
        assert now.id == migration.key and now.distance is not None and now.distance < 1e-4
        before = await nearest_record(archive, team, int8, indexed_text(migration))
        assert before.distance is not None and before.distance > 1e-3  # not the old text's
        assert (
            await archive.vector_count(team) == await archive.count(team) == len(corpus(team)) - 1
        )
        hits = await keys(
            archive, team, "which day does the data store upgrade happen now", EVERYONE
        )
        assert hits[0] == migration.key
    finally:
        gated.release.set()
        await reembedding.close()
        await archive.close()


async def test_closing_cancels_and_a_restart_resumes(
    tmp_path: Path, int8: OnnxEmbedder, any_engine: AsyncEngine, team_archived: str
) -> None:
    team = team_archived
    gated = GatedEmbedder(int8, hold_at=2)  # the first batch is written, the second waits
    archive = await Archive.open_embedded(tmp_path / "chroma", gated, any_engine)
    reembedding = Reembedding(archive, batch=2)
    try:
        task = reembedding.start(team)
        assert task is not None
        await asyncio.to_thread(gated.entered.wait, 60)
        await reembedding.close()
        assert task.cancelled()
        assert reembedding.start(team) is None  # closed: starts nothing
    finally:
        gated.release.set()
        await archive.close()
    partial = await Archive.open_embedded(tmp_path / "chroma", int8, any_engine)
    again = Reembedding(partial)
    try:
        done = 0 if (task := again.start(team)) is None else await task
        assert done == len(corpus(team)) - 2
        assert await partial.vector_count(team) == await partial.count(team)
    finally:
        await again.close()
        await partial.close()


async def test_one_reembedding_per_workspace_and_space_at_a_time(
    tmp_path: Path, int8: OnnxEmbedder, any_engine: AsyncEngine, team_archived: str
) -> None:
    """Processes sharing the stores (here: two re-embeddings sharing leases) do the work once."""
    team = team_archived
    gated = GatedEmbedder(int8, hold_at=1)
    archive = await Archive.open_embedded(tmp_path / "chroma", gated, any_engine)
    leases = LocalLeases()
    first, second = Reembedding(archive, leases), Reembedding(archive, leases)
    try:
        task = first.start(team)
        assert task is not None
        await asyncio.to_thread(gated.entered.wait, 60)
        assert await second.run(team) == 0  # the first holds the workspace's lease
        gated.release.set()
        assert await task == len(corpus(team))
        assert await archive.vector_count(team) == len(corpus(team))
    finally:
        gated.release.set()
        await first.close()
        await second.close()
        await archive.close()


async def test_notes_are_reembedded_too(
    tmp_path: Path, embedder: OnnxEmbedder, int8: OnnxEmbedder, any_engine: AsyncEngine
) -> None:
    team = new_team()
    source = NoteSource("C1", f"{BASE}.000100")
    note = await Notes(any_engine, embedder).add(
        team,
        text="The on-call rotation changes every Monday at noon.",
        sources=[source],
        channel_type="channel",
        written_by="test",
    )
    notes = Notes(any_engine, int8)
    search = NoteSearch(notes, int8)
    query = "who carries the pager each week"  # no word in common: found by meaning only

    async def found() -> list[str]:
        hits = await search.search(team, query, audience=EVERYONE, filters=SearchFilters(), limit=3)
        return [hit.id for hit, _ in hits]

    assert await found() == []  # its vector is of the fp32 space
    archive = await Archive.open_embedded(tmp_path / "chroma", int8, any_engine)
    reembedding = Reembedding(archive, notes=notes)
    try:
        assert await reembedding.run(team) == 0  # no messages, one note
        assert await found() == [note.id]
        assert await notes.reembed_some(team, 10) == 0
    finally:
        await reembedding.close()
        await archive.close()


async def test_lore_reembeds_the_workspaces_it_serves_when_the_precision_changes(
    tmp_path: Path, team_emulator: SlackEmulator
) -> None:
    """Lore started on a data dir archived with fp32, now with LORE_EMBEDDING_PRECISION=int8,
    re-embeds its workspace in the background and reports it in its metrics (it is not idle
    until that is done); a workspace it does not serve (another token's) is left alone."""
    team, other = team_emulator.config.team_id, new_team()
    fp32 = lore_settings(tmp_path, None, redis_url=None, lore_embedding_precision="fp32")
    stores = await open_stores(fp32)
    try:
        await stores.archive.add([*corpus(team), *corpus(other)])
    finally:
        await stores.close()
    settings = lore_settings(
        tmp_path, None, redis_url=None, lore_embedding_precision="int8", lore_model_cache_dir=None
    )
    lore = await start_lore_on(team_emulator, settings)
    try:
        archive = lore.stores.archive
        assert archive.space == INT8_NAME
        assert lore.stores.reembedding.pending == 1  # looking for what to re-embed
        await settled(team_emulator, lore)  # idle: re-embedding counts as work under way
        assert lore.stores.reembedding.pending == 0
        assert lore.stores.reembedding.embedded == len(corpus(team))
        assert await archive.vector_count(team) == await archive.count(team) == len(corpus(team))
        assert await archive.vector_count(other) == 0  # not this token's workspace
        migration = corpus(team)[0]
        hits = await archive.search(team, MIGRATION_QUERY, audience=EVERYONE, limit=1)
        assert hits[0].message.key == migration.key
        exposition = (await lore.services.metrics.exposition("text/plain"))[0].decode()
        assert f"lore_archive_reembedded_total {len(corpus(team))}.0" in exposition
        assert "lore_archive_reembedding 0.0" in exposition
    finally:
        await lore.stop()
    assert (tmp_path / "models" / INT8_NAME).is_dir()
