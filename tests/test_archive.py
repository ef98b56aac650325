"""Tests of the message archive: real Chroma (embedded, and a local server), real model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.archive import (
    Archive,
    ArchivedMessage,
    SearchFilters,
    build_where,
    collection_name,
)
from memory.audience import Audience
from memory.embeddings import HashingEmbedder, OnnxEmbedder
from tests.conftest import new_team

MODEL_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "all-MiniLM-L6-v2"

DAY = 86_400.0
BASE = 1_700_000_000.0  # 2023-11-14


def ts(day: int, micro: int = 100) -> str:
    return f"{BASE + day * DAY:.0f}.{micro:06d}"


def msg(
    channel: str,
    day: int,
    text: str,
    user: str | None = "U1",
    *,
    channel_type: str = "channel",
    thread_ts: str | None = None,
    permalink: str | None = None,
    is_bot: bool = False,
) -> ArchivedMessage:
    return ArchivedMessage(
        team_id="T1",
        channel_id=channel,
        channel_type=channel_type,
        ts=ts(day),
        text=text,
        user_id=user,
        thread_ts=thread_ts,
        permalink=permalink,
        is_bot=is_bot,
    )


MIGRATION = msg("C1", 1, "The production database migration is scheduled for Saturday night.")
LUNCH = msg("C1", 2, "Lunch today is tacos at the new place downtown.", user="U2")
SALES = msg("C2", 3, "Our quarterly sales numbers beat the forecast by ten percent.")
CI = msg("C2", 4, "The CI pipeline keeps failing on the flaky login test.", user="U2")
VACATION = msg(
    "G1", 5, "Remember to submit vacation requests before December.", channel_type="group"
)
OFFSITE = msg(
    "D1",
    6,
    "I moved the team offsite to a mountain lodge in March.",
    user="U2",
    channel_type="im",
    thread_ts=ts(6),
    permalink="https://x.slack.com/archives/D1/p1",
    is_bot=True,
)
CORPUS = [MIGRATION, LUNCH, SALES, CI, VACATION, OFFSITE]
EVERYONE = Audience.everyone()


@pytest.fixture
async def archive(
    tmp_path: Path, embedder: OnnxEmbedder, sqlite_engine: AsyncEngine
) -> AsyncIterator[Archive]:
    arc = await Archive.open_embedded(tmp_path / "chroma", embedder, sqlite_engine)
    yield arc
    await arc.close()


@pytest.fixture
async def loaded(archive: Archive) -> Archive:
    await archive.add(CORPUS)
    return archive


async def keys(arc: Archive, query: str, filters: SearchFilters, team: str = "T1") -> set[str]:
    hits = await arc.search(team, query, audience=EVERYONE, filters=filters, limit=20)
    return {h.message.key for h in hits}


async def test_paraphrase_is_found_first(loaded: Archive) -> None:
    hits = await loaded.search(
        "T1", "when are we migrating the prod DB?", audience=EVERYONE, limit=3
    )
    assert hits[0].message == MIGRATION
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    hits = await loaded.search(
        "T1", "which unit test is unreliable in the build?", audience=EVERYONE, limit=1
    )
    assert hits[0].message == CI


async def test_metadata_round_trips(loaded: Archive) -> None:
    for m in CORPUS:
        assert await loaded.get("T1", m.channel_id, m.ts) == m
    assert await loaded.get("T1", "C1", ts(99)) is None
    assert await loaded.get("T-unknown", "C1", MIGRATION.ts) is None


async def test_channel_filter(loaded: Archive) -> None:
    assert await keys(loaded, "anything", SearchFilters(channels=frozenset({"C2"}))) == {
        SALES.key,
        CI.key,
    }
    assert await keys(loaded, "x", SearchFilters(channels=frozenset({"G1", "D1"}))) == {
        VACATION.key,
        OFFSITE.key,
    }
    nothing = SearchFilters(channels=frozenset())
    assert await loaded.search("T1", "database", audience=EVERYONE, filters=nothing) == []
    assert await keys(loaded, "x", SearchFilters(channels=frozenset({"C-none"}))) == set()


async def test_user_filter(loaded: Archive) -> None:
    found = await keys(loaded, "database migration", SearchFilters(user_id="U2"))
    assert found == {LUNCH.key, CI.key, OFFSITE.key}


async def test_date_filters(loaded: Archive) -> None:
    edge = float(SALES.ts)
    after = await keys(loaded, "news", SearchFilters(after=edge))
    assert after == {SALES.key, CI.key, VACATION.key, OFFSITE.key}  # inclusive
    before = await keys(loaded, "news", SearchFilters(before=edge))
    assert before == {MIGRATION.key, LUNCH.key}  # exclusive
    window = await keys(loaded, "news", SearchFilters(after=float(LUNCH.ts), before=float(CI.ts)))
    assert window == {LUNCH.key, SALES.key}


async def test_combined_filters(loaded: Archive) -> None:
    filters = SearchFilters(channels=frozenset({"C1", "C2"}), user_id="U1", after=BASE + 2 * DAY)
    assert await keys(loaded, "database", filters) == {SALES.key}
    where = build_where(filters, EVERYONE)
    assert where is not None and len(where["$and"]) == 3  # no team: the collection is the team's
    assert build_where(SearchFilters(), EVERYONE) is None
    public = build_where(SearchFilters(), Audience(frozenset()))
    assert public == {"channel_type": "channel"}
    mine = build_where(SearchFilters(user_id="U1"), Audience(frozenset({"G1"})))
    assert mine is not None
    assert mine["$and"][0] == {"$or": [{"channel_type": "channel"}, {"channel": {"$in": ["G1"]}}]}
    # a channel filter inside the audience's own channels needs no audience condition
    own = build_where(SearchFilters(channels=frozenset({"G1"})), Audience(frozenset({"G1"})))
    assert own == {"channel": {"$in": ["G1"]}}


async def test_upsert_same_key_does_not_duplicate(archive: Archive) -> None:
    await archive.add([MIGRATION])
    await archive.add([replace(MIGRATION, text="Migration moved to Sunday.")])
    await archive.add([replace(MIGRATION, text="a"), replace(MIGRATION, text="Final: Monday.")])
    assert await archive.count("T1") == 1
    stored = await archive.get("T1", "C1", MIGRATION.ts)
    assert stored is not None and stored.text == "Final: Monday."


async def test_update_text_changes_search(loaded: Archive) -> None:
    new_text = "The office air conditioning broke down again."
    assert await loaded.update_text("T1", LUNCH.channel_id, LUNCH.ts, new_text)
    stored = await loaded.get("T1", LUNCH.channel_id, LUNCH.ts)
    assert stored == replace(LUNCH, text=new_text)
    top = await loaded.search("T1", "the AC is not working", audience=EVERYONE, limit=1)
    assert top[0].message.key == LUNCH.key
    for hit in await loaded.search("T1", "tacos for lunch", audience=EVERYONE, limit=10):
        assert "tacos" not in hit.message.text
    assert await loaded.count("T1") == len(CORPUS)
    assert not await loaded.update_text("T1", "C1", ts(42), "nope")
    assert not await loaded.update_text("T9", LUNCH.channel_id, LUNCH.ts, "nope")


async def test_delete(loaded: Archive) -> None:
    assert await loaded.delete("T1", SALES.channel_id, SALES.ts)
    assert await loaded.get("T1", SALES.channel_id, SALES.ts) is None
    assert await loaded.count("T1") == len(CORPUS) - 1
    hits = await loaded.search(
        "T1", "quarterly sales beat the forecast", audience=EVERYONE, limit=10
    )
    assert SALES.key not in {h.message.key for h in hits}
    assert not await loaded.delete("T1", SALES.channel_id, SALES.ts)
    assert not await loaded.delete("T9", SALES.channel_id, SALES.ts)


async def test_team_isolation(loaded: Archive) -> None:
    twin = replace(MIGRATION, team_id="T2", text="Database migration on Saturday for team two.")
    await loaded.add([twin, replace(CI, team_id="T2")])
    assert await loaded.count("T1") == len(CORPUS)
    assert await loaded.count("T2") == 2
    t1_hits = await loaded.search("T1", "database migration", audience=EVERYONE, limit=50)
    t2_hits = await loaded.search("T2", "database migration", audience=EVERYONE, limit=50)
    assert {h.message.team_id for h in t1_hits} == {"T1"}
    assert {h.message.team_id for h in t2_hits} == {"T2"}
    assert len(t2_hits) == 2
    assert await loaded.get("T2", MIGRATION.channel_id, MIGRATION.ts) == twin
    assert await loaded.get("T1", MIGRATION.channel_id, MIGRATION.ts) == MIGRATION
    assert await loaded.search("T3", "database migration", audience=EVERYONE) == []
    assert await loaded.count("T3") == 0


async def test_delete_team(loaded: Archive) -> None:
    await loaded.add([replace(CI, team_id="T2")])
    await loaded.delete_team("T1")
    assert await loaded.count("T1") == 0
    assert await loaded.search("T1", "database migration", audience=EVERYONE) == []
    assert await loaded.get("T1", MIGRATION.channel_id, MIGRATION.ts) is None
    assert await loaded.count("T2") == 1
    await loaded.delete_team("T1")  # idempotent
    await loaded.add([MIGRATION])  # the workspace can start over
    assert await loaded.count("T1") == 1


async def test_long_and_odd_unicode_round_trip(archive: Archive) -> None:
    long_text = ("Kubernetes upgrade notes: drain nodes first. " * 1000)[:40_000]
    odd = (
        "مرحبا بالعالم \u200f שלום \u202e reversed \u202c family 👩‍👩‍👧‍👦 flag 🇳🇴 "
        "combining e\u0301\u0308 Z\u0336a\u0337 ctrl \x01\x07\x1b[31m\x7f\u0085 tab\t nl\n crlf\r\n"
        " zero-width \u200b\u2060 bom \ufeff 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 CJK 漢字 かな"
    )
    big = msg("C9", 10, long_text)
    strange = msg("C9", 11, odd)
    await archive.add([big, strange])
    assert len(big.text) == 40_000
    assert await archive.get("T1", "C9", big.ts) == big
    assert await archive.get("T1", "C9", strange.ts) == strange
    hits = await archive.search("T1", "how to upgrade kubernetes nodes", audience=EVERYONE, limit=1)
    assert hits[0].message.text == long_text


async def test_lone_surrogates_are_replaced(archive: Archive) -> None:
    await archive.add([msg("C1", 1, "broken \ud83d half"), msg("C1", 2, "pair \ud83d\ude00 ok")])
    stored = await archive.get("T1", "C1", ts(1))
    assert stored is not None and stored.text == "broken \ufffd half"
    joined = await archive.get("T1", "C1", ts(2))
    assert joined is not None and joined.text == "pair 😀 ok"


async def test_reopen_finds_data(
    tmp_path: Path, embedder: OnnxEmbedder, sqlite_engine: AsyncEngine
) -> None:
    path = tmp_path / "persist"
    first = await Archive.open_embedded(path, embedder, sqlite_engine)
    await first.add(CORPUS)
    await first.close()
    second = await Archive.open_embedded(path, embedder, sqlite_engine)
    try:
        assert await second.count("T1") == len(CORPUS)
        hits = await second.search(
            "T1", "where is the team offsite this spring?", audience=EVERYONE, limit=1
        )
        assert hits[0].message == OFFSITE
    finally:
        await second.close()


async def vectors(arc: Archive, team: str) -> int:
    """Records in the team's Chroma collection (count() is the SQL record's)."""
    return await arc._read(team, lambda c: c.count(), 0)


async def test_vector_spaces_never_share_a_collection(
    loaded: Archive, tmp_path: Path, sqlite_engine: AsyncEngine
) -> None:
    hashing = await Archive.open_embedded(tmp_path / "chroma", HashingEmbedder(), sqlite_engine)
    try:
        assert await vectors(hashing, "T1") == 0  # same dir, same team, different space
        await hashing.add([LUNCH])
        hits = await hashing.search("T1", "tacos downtown", audience=EVERYONE)
        assert hits[0].message == LUNCH
        assert await vectors(hashing, "T1") == 1
        assert await vectors(loaded, "T1") == len(CORPUS)
    finally:
        await hashing.close()
    assert collection_name("T1", "a") != collection_name("T1", "b")
    assert collection_name("T1", "a") != collection_name("T2", "a")


async def test_odd_team_ids_give_valid_collections(archive: Archive) -> None:
    teams = ["T..1/ä", "E" * 300, "x", "t1", "T1"]
    for team in teams:
        await archive.add([replace(MIGRATION, team_id=team)])
    assert [await archive.count(team) for team in teams] == [1] * len(teams)
    assert len({collection_name(t, "all-MiniLM-L6-v2") for t in teams}) == len(teams)


async def test_concurrent_adds_are_safe(archive: Archive) -> None:
    batches = [
        [msg(f"C{b}", i, f"status update {b}-{i} about the rollout") for i in range(20)]
        for b in range(6)
    ]
    await asyncio.gather(*(archive.add(batch) for batch in batches))
    assert await archive.count("T1") == 120


async def test_event_loop_keeps_running_during_add(archive: Archive) -> None:
    text = "about deploy windows and rollback plans. " * 8
    messages = [msg("C1", i, f"Message {i} {text}") for i in range(128)]
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is running before the add starts
    started = time.perf_counter()
    await archive.add(messages)
    elapsed = time.perf_counter() - started
    done.set()
    await task
    assert await archive.count("T1") == 128
    assert len(gaps) >= 10
    assert max(gaps) < max(0.25, elapsed / 3)  # never blocked for the whole add


async def test_open_http_against_local_server(
    chroma_server: str, embedder: OnnxEmbedder, sqlite_engine: AsyncEngine
) -> None:
    # The server lives for the whole run: fresh team ids keep this test's collections its own.
    one, two = new_team(), new_team()
    corpus = [replace(m, team_id=one) for m in CORPUS]
    migration, lunch, sales = corpus[0], corpus[1], replace(SALES, team_id=two)
    arc = await Archive.open_http(chroma_server, embedder, sqlite_engine)
    try:
        await arc.add([*corpus, sales])
        assert await arc.count(one) == len(corpus)
        hits = await arc.search(
            one, "when are we migrating the prod DB?", audience=EVERYONE, limit=2
        )
        assert hits[0].message == migration
        filters = SearchFilters(user_id="U2", after=float(CI.ts))
        filtered = await arc.search(one, "x", audience=EVERYONE, filters=filters)
        assert {h.message.key for h in filtered} == {CI.key, OFFSITE.key}
        assert await arc.update_text(one, "C1", LUNCH.ts, "Pizza instead.")
        assert (await arc.get(one, "C1", LUNCH.ts)) == replace(lunch, text="Pizza instead.")
        assert await arc.delete(one, SALES.channel_id, SALES.ts)
        assert await arc.count(one) == len(corpus) - 1
        assert [h.message.team_id for h in await arc.search(two, "sales", audience=EVERYONE)] == [
            two
        ]
        await arc.delete_team(one)
        assert await arc.count(one) == 0
        assert await arc.count(two) == 1
        await arc.delete_team(two)
    finally:
        await arc.close()


async def test_open_http_rejects_bad_url(
    embedder: OnnxEmbedder, sqlite_engine: AsyncEngine
) -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        await Archive.open_http("chroma.example:8000", embedder, sqlite_engine)


async def test_chroma_keeps_vectors_and_filter_fields_not_text(archive: Archive) -> None:
    """The record lives in SQL; Chroma holds a message's vector and the fields searches filter
    on. A record an older version stored with its text loses the text when written again."""
    old = await archive._writable("T1")
    await old.upsert([LUNCH.key], [[1.0] + [0.0] * 383], [LUNCH.text], [{"team": "T1"}])
    await archive.add([MIGRATION, LUNCH])
    collection = await archive._collection("T1", create=False)
    assert collection is not None
    records = {r.id: r for r in await collection.get([MIGRATION.key, LUNCH.key])}
    assert {key: r.document for key, r in records.items()} == {MIGRATION.key: "", LUNCH.key: ""}
    assert dict(records[MIGRATION.key].metadata) == {
        "channel": "C1",
        "channel_type": "channel",
        "ts_num": float(MIGRATION.ts),
        "user": "U1",
    }
    assert (await archive.search("T1", "tacos for lunch", audience=EVERYONE, limit=1))[
        0
    ].message == LUNCH


class CountingEmbedder:
    """An embedder that counts the texts it embedded."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.name, self.dim, self._inner, self.texts = inner.name, inner.dim, inner, 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self._inner.embed(texts)


async def test_a_change_that_leaves_the_text_rewrites_nothing(
    tmp_path: Path, embedder: OnnxEmbedder, sqlite_engine: AsyncEngine
) -> None:
    """Slack sends a message_changed when a link's unfurl is added, the text as it was: the
    message is not embedded and written again; a change of its text is (the control)."""
    counting = CountingEmbedder(embedder)
    arc = await Archive.open_embedded(tmp_path / "chroma", counting, sqlite_engine)
    try:
        await arc.add([MIGRATION])
        embedded = counting.texts
        assert await arc.update_text("T1", "C1", MIGRATION.ts, MIGRATION.text)
        assert counting.texts == embedded
        assert await arc.update_text("T1", "C1", MIGRATION.ts, "Moved to Sunday morning.")
        assert counting.texts == embedded + 1
        stored = await arc.get("T1", "C1", MIGRATION.ts)
        assert stored is not None and stored.text == "Moved to Sunday morning."
    finally:
        await arc.close()
