"""Hybrid search: lexical and dense retrievals, fusion, filters and privacy inside search.

Real Chroma (embedded), the real model, and both SQL stores (SQLite FTS5 and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.archive import Archive, ArchivedMessage, SearchFilters, SearchHit, message_key
from memory.audience import Audience
from memory.embeddings import OnnxEmbedder
from memory.lexical import Key
from memory.messages import indexed_text
from memory.ranking import Ranking
from tests.conftest import new_team
from tests.vector_checks import nearest_record

EVERYONE = Audience.everyone()
NONE = SearchFilters()
BASE = 1_700_000_000


def ts(i: int) -> str:
    return f"{BASE + i * 3600}.000100"


class Corpus:
    """Messages of one fresh workspace."""

    def __init__(self) -> None:
        self.team = new_team()

    def msg(
        self,
        channel: str,
        i: int,
        text: str,
        *,
        channel_type: str = "channel",
        user: str = "U1",
        thread: int | None = None,
        name: str | None = None,
    ) -> ArchivedMessage:
        return ArchivedMessage(
            team_id=self.team,
            channel_id=channel,
            channel_type=channel_type,
            ts=ts(i),
            text=text,
            user_id=user,
            thread_ts=ts(thread) if thread is not None else None,
            permalink=f"https://x.slack.com/archives/{channel}/p{i}",
            user_name=name,
        )


@pytest.fixture
async def archive(
    tmp_path: Path, embedder: OnnxEmbedder, any_engine: AsyncEngine
) -> AsyncIterator[Archive]:
    arc = await Archive.open_embedded(tmp_path / "chroma", embedder, any_engine)
    yield arc
    await arc.close()


async def lexical(arc: Archive, team: str, query: str, **scope: object) -> list[Key]:
    audience = scope.get("audience", EVERYONE)
    filters = scope.get("filters", NONE)
    assert isinstance(audience, Audience) and isinstance(filters, SearchFilters)
    return await arc._lexical.search(team, query, audience=audience, filters=filters, limit=50)


async def dense(arc: Archive, team: str, query: str, **scope: object) -> list[Key]:
    audience = scope.get("audience", EVERYONE)
    filters = scope.get("filters", NONE)
    assert isinstance(audience, Audience) and isinstance(filters, SearchFilters)
    return await arc._dense(team, lambda: arc._embed_query(query), audience, filters, 50)


def keys(hits: Sequence[SearchHit]) -> list[Key]:
    return [(h.message.channel_id, h.message.ts) for h in hits]


def key(message: ArchivedMessage) -> Key:
    return (message.channel_id, message.ts)


async def test_lexical_finds_a_rare_exact_term_that_dense_misses(archive: Archive) -> None:
    c = Corpus()
    target = c.msg(
        "C1",
        1,
        "Shipped the new onboarding flow today: rewrote the welcome copy, fixed the signup "
        "button on Safari, added analytics events for each step, and bumped the mobile SDK "
        "(7f3e9c1).",
    )
    others = [
        c.msg("C1", 2, "commit 5a2b8d0 reverted"),
        c.msg("C1", 3, "commit 9c4e1f7 broke the build"),
        c.msg("C1", 4, "3f7e1c9 is the hash of the release tag"),
        c.msg("C1", 5, "Which commit introduced the regression? e7f93c1 maybe"),
        c.msg("C1", 6, "Lunch today is tacos at the new place downtown."),
    ]
    await archive.add([target, *others])
    assert (await lexical(archive, c.team, "7f3e9c1")) == [key(target)]
    assert key(target) not in (await dense(archive, c.team, "7f3e9c1"))[:3]
    hits = await archive.search(c.team, "7f3e9c1", audience=EVERYONE, limit=3)
    assert hits[0].message == target


async def test_dense_finds_a_paraphrase_that_lexical_misses(archive: Archive) -> None:
    c = Corpus()
    target = c.msg("C1", 1, "The production database migration is scheduled for Saturday night.")
    others = [
        c.msg("C1", 2, "Lunch today is tacos at the new place downtown."),
        c.msg("C1", 3, "The CI pipeline keeps failing on the flaky login test."),
        c.msg("C1", 4, "Our quarterly sales numbers beat the forecast by ten percent."),
    ]
    await archive.add([target, *others])
    question = "when do we move prod data onto the new DB server?"
    assert key(target) not in await lexical(archive, c.team, question)
    assert (await dense(archive, c.team, question))[0] == key(target)
    assert key(target) in keys(await archive.search(c.team, question, audience=EVERYONE, limit=2))


def test_fusion_prefers_agreement_then_the_heavier_ranking() -> None:
    a, b, c, d = ("C", "1"), ("C", "2"), ("C", "3"), ("C", "4")
    ranking = Ranking(rrf_k=10, dense_weight=0.5)
    scores = ranking.fuse([a, b], [c, b, d])
    assert sorted(scores, key=lambda k: -scores[k]) == [b, a, c, d]
    # in both lists first; then lexical #1 over dense #1 (dense weighs half)
    assert scores[a] == pytest.approx(1 / 11) and scores[c] == pytest.approx(0.5 / 11)
    assert scores[b] == pytest.approx(1 / 12 + 0.5 / 12)
    assert ranking.fuse([], []) == {}
    dated = Ranking(rrf_k=10, dense_weight=0.5, date_weight=2.0).fuse([a], [], [([d], [a])])
    assert dated[d] == pytest.approx(2 / 11) and dated[a] == pytest.approx(1 / 11 + 1 / 11)
    dense_first = Ranking(rrf_k=60, dense_weight=2.0).fuse([a], [c])
    assert dense_first[c] > dense_first[a]


async def test_both_lists_are_fused_in_search(archive: Archive) -> None:
    c = Corpus()
    both = c.msg("C1", 1, "Kubernetes upgrade to 1.29 finished; drain the old node pool.")
    words = c.msg("C1", 2, "kubernetes kubernetes upgrade notes are in the wiki")
    meaning = c.msg("C1", 3, "The k8s cluster version bump is done and old nodes are retired.")
    noise = [c.msg("C1", 4 + i, f"Standup notes day {i}: nothing blocked.") for i in range(5)]
    await archive.add([both, words, meaning, *noise])
    hits = await archive.search(c.team, "kubernetes upgrade finished", audience=EVERYONE)
    assert hits[0].message == both
    assert {key(words), key(meaning)} <= set(keys(hits[:4]))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_thread_neighbours_give_context(archive: Archive) -> None:
    c = Corpus()
    question = c.msg("C1", 1, "Which database should the billing service use?", thread=1)
    answer = c.msg("C1", 2, "Postgres, definitely. We already run it.", user="U2", thread=1)
    other = c.msg("C1", 3, "The office plants need watering.", thread=3)
    await archive.add([question, answer, other])
    found = await lexical(archive, c.team, "billing service")
    assert found[0] == key(question)  # its own words count most
    assert key(answer) in found  # found by its thread's words
    assert await archive.thread(c.team, "C1", ts(1)) == [question, answer]
    assert await archive.thread(c.team, "C1", ts(3)) == [other]
    assert await archive.thread(c.team, "C1", ts(9)) == []


async def test_the_authors_name_is_searched_in_both_retrievals(archive: Archive) -> None:
    c = Corpus()
    priya = c.msg("C1", 1, "I think the launch slips to March.", user="U1", name="Priya Raman")
    tom = c.msg("C1", 2, "I think the launch slips to April.", user="U2", name="Tom Okafor")
    chatter = [
        c.msg("C1", 3 + i, f"Launch checklist item {i} is done.", user="U2", name="Tom Okafor")
        for i in range(6)
    ]
    await archive.add([priya, tom, *chatter])
    question = "When does Priya think the launch will happen?"
    assert (await lexical(archive, c.team, question))[0] == key(priya)
    assert (await dense(archive, c.team, question))[0] == key(priya)
    assert (await archive.search(c.team, question, audience=EVERYONE))[0].message == priya
    assert (await archive.search(c.team, "What did Tom say?", audience=EVERYONE))[
        0
    ].message.user_name == "Tom Okafor"
    # an edit keeps the author, in the record and in both indexes
    assert await archive.update_text(c.team, "C1", priya.ts, "Launch is now set for May.")
    edited = await archive.get(c.team, "C1", priya.ts)
    assert edited == replace(priya, text="Launch is now set for May.")
    assert (await lexical(archive, c.team, "what does priya say now"))[0] == key(priya)
    assert (await dense(archive, c.team, "What does Priya say now?"))[0] == key(priya)


async def test_each_filter_in_both_retrievals(archive: Archive) -> None:
    c = Corpus()
    text = "Deploy checklist: run the database migration before the release."
    corpus = [
        c.msg("C1", 1, text, user="U1"),
        c.msg("C1", 2, text + " (again)", user="U2"),
        c.msg("C2", 3, text + " (copy)", user="U1"),
        c.msg("C2", 4, text + " (last)", user="U2"),
    ]
    await archive.add(corpus)
    cases = {
        SearchFilters(channels=frozenset({"C2"})): {key(corpus[2]), key(corpus[3])},
        SearchFilters(user_id="U2"): {key(corpus[1]), key(corpus[3])},
        SearchFilters(after=float(ts(2))): {key(m) for m in corpus[1:]},  # inclusive
        SearchFilters(before=float(ts(2))): {key(corpus[0])},  # exclusive
        SearchFilters(channels=frozenset({"C1", "C2"}), user_id="U1", after=float(ts(2))): {
            key(corpus[2])
        },
        SearchFilters(channels=frozenset({"C-none"})): set(),
    }
    query = "database migration deploy checklist"
    for filters, expected in cases.items():
        assert set(await lexical(archive, c.team, query, filters=filters)) == expected, filters
        assert set(await dense(archive, c.team, query, filters=filters)) == expected, filters
        hits = await archive.search(c.team, query, audience=EVERYONE, filters=filters, limit=20)
        assert set(keys(hits)) == expected, filters
    nothing = SearchFilters(channels=frozenset())
    assert await archive.search(c.team, query, audience=EVERYONE, filters=nothing) == []


async def test_private_conversations_only_reach_their_audience(archive: Archive) -> None:
    c = Corpus()
    secret = "The acquisition of Nimbus Robotics closes on March 3rd; keep it quiet."
    public = c.msg("C1", 1, "Nimbus Robotics acquisition rumours are all over the news.")
    group = c.msg("G1", 2, secret, channel_type="group")
    dm = c.msg("D1", 3, secret + " (dm)", channel_type="im")
    mpim = c.msg("M1", 4, secret + " (group dm)", channel_type="mpim")
    await archive.add([public, group, dm, mpim])
    query = "Nimbus Robotics acquisition closing date"
    every = {key(public), key(group), key(dm), key(mpim)}
    assert set(await lexical(archive, c.team, query)) == every
    assert set(await dense(archive, c.team, query)) == every
    assert set(keys(await archive.search(c.team, query, audience=EVERYONE, limit=10))) == every

    audiences = {
        Audience(frozenset({"C1"})): {key(public)},  # an answer posted in C1
        Audience(frozenset({"C7"})): {key(public)},  # an answer posted elsewhere
        Audience(frozenset({"G1"})): {key(public), key(group)},  # an answer in G1
        Audience(frozenset({"D1", "M1"})): {key(public), key(dm), key(mpim)},
        Audience(frozenset({"G1"}), public=False): {key(group)},
        Audience(frozenset(), public=False): set(),
    }
    for audience, visible in audiences.items():
        assert set(await lexical(archive, c.team, query, audience=audience)) == visible
        assert set(await dense(archive, c.team, query, audience=audience)) == visible
        hits = await archive.search(c.team, query, audience=audience, limit=10)
        assert set(keys(hits)) == visible, audience
        for filters in (SearchFilters(channels=frozenset({"G1"})), SearchFilters(user_id="U1")):
            hits = await archive.search(c.team, query, audience=audience, filters=filters)
            assert set(keys(hits)) <= visible
    # a channel filter naming a private channel does not widen the audience
    only_g1 = SearchFilters(channels=frozenset({"G1"}))
    assert (
        await archive.search(c.team, query, audience=Audience(frozenset()), filters=only_g1) == []
    )


async def test_search_requires_an_audience(archive: Archive) -> None:
    with pytest.raises(TypeError):
        await archive.search("T1", "anything")  # type: ignore[call-arg]


async def test_edits_and_deletions_reach_both_indexes(
    archive: Archive, embedder: OnnxEmbedder
) -> None:
    c = Corpus()
    parent = c.msg("C1", 1, "Where should the team offsite be this year?", thread=1)
    reply = c.msg("C1", 2, "The offsite is at the Zermatt lodge, codeword zebrafish.", thread=1)
    last = c.msg("C1", 3, "Sounds great, I'll book the train.", thread=1)
    await archive.add([parent, reply, last])
    assert set(await lexical(archive, c.team, "zebrafish")) == {
        key(m) for m in (parent, reply, last)
    }

    new_text = "The offsite moved to a beach house in Lisbon."
    assert await archive.update_text(c.team, "C1", reply.ts, new_text)
    assert await lexical(archive, c.team, "zebrafish Zermatt") == []  # the neighbours' too
    assert key(reply) in await lexical(archive, c.team, "Lisbon beach")
    hits = await archive.search(c.team, "zebrafish Zermatt lodge", audience=EVERYONE, limit=10)
    assert all("zebrafish" not in h.message.text for h in hits)
    top = await archive.search(c.team, "offsite in Lisbon at the beach", audience=EVERYONE)
    assert top[0].message == replace(reply, text=new_text)
    edited = await archive.get(c.team, "C1", reply.ts)
    assert edited is not None
    now = await nearest_record(archive, c.team, embedder, indexed_text(edited))
    assert now.id == reply.key and now.distance is not None and now.distance < 1e-4
    before = await nearest_record(archive, c.team, embedder, indexed_text(reply))
    assert before.distance is not None and before.distance > 1e-3  # no vector of the old text

    assert await archive.delete(c.team, "C1", reply.ts)
    assert await lexical(archive, c.team, "Lisbon beach") == []  # neighbours forgot it too
    assert key(reply) not in await dense(archive, c.team, "offsite in Lisbon at the beach")
    hits = await archive.search(c.team, "offsite in Lisbon at the beach", audience=EVERYONE)
    assert reply.ts not in {h.message.ts for h in hits}
    assert await archive.get(c.team, "C1", reply.ts) is None
    assert await archive.thread(c.team, "C1", ts(1)) == [parent, last]
    assert await archive.count(c.team) == 2
    assert not await archive.delete(c.team, "C1", reply.ts)


async def test_hits_are_validated_against_the_record(archive: Archive) -> None:
    c = Corpus()
    kept = c.msg("C1", 1, "Quarterly sales beat the forecast by ten percent.")
    await archive.add([kept])
    # a vector that outlived its record, and one made from text the record no longer has
    orphan = c.msg("C1", 2, "Quarterly sales missed the forecast badly.")
    stale = replace(kept, text="Quarterly sales forecast numbers")
    async with archive._lock(c.team):
        await archive._upsert(
            c.team, [orphan, stale], await archive._embed([orphan.text, stale.text])
        )
    assert key(orphan) in await dense(archive, c.team, "quarterly sales forecast")
    hits = await archive.search(c.team, "quarterly sales forecast", audience=EVERYONE)
    assert [h.message for h in hits] == [kept]  # the record's text, never the vector's


async def test_dense_retrieval_restricts_by_scope_however_it_queries(archive: Archive) -> None:
    c = Corpus()
    busy = [c.msg("C1", i, f"Release {i} notes: the deploy went fine.") for i in range(40)]
    quiet = c.msg("C2", 50, "Release notes for the quiet channel deploy.", user="U2")
    private = c.msg("G1", 51, "Release notes for the secret deploy.", channel_type="group")
    await archive.add([*busy, quiet, private])
    query = "release notes deploy"
    answer_in_c9 = Audience(frozenset({"C9"}))
    # broad: the unfiltered nearest, filtered by channel type
    broad = await dense(archive, c.team, query, audience=answer_in_c9)
    assert key(private) not in broad and len(broad) == 41
    # narrow: one quiet channel (2% of messages), or one author: among the scope's ids
    only_c2 = SearchFilters(channels=frozenset({"C2"}))
    assert await dense(archive, c.team, query, filters=only_c2) == [key(quiet)]
    by_u2 = SearchFilters(user_id="U2")
    assert await dense(archive, c.team, query, audience=answer_in_c9, filters=by_u2) == [key(quiet)]
    only_g1 = SearchFilters(channels=frozenset({"G1"}))
    assert await dense(archive, c.team, query, audience=answer_in_c9, filters=only_g1) == []
    # a record without a vector makes the ids path fail: Chroma's own filter takes over
    lost = c.msg("C2", 52, "Release notes whose vector was lost.")
    await archive._lexical.write(c.team, upserts=[(lost, "")])
    assert await dense(archive, c.team, query, filters=only_c2) == [key(quiet)]
    hits = await archive.search(c.team, query, audience=answer_in_c9, filters=only_c2)
    assert {h.message.key for h in hits} == {quiet.key, lost.key}  # lost: found by words
    assert message_key(*key(quiet)) == quiet.key


async def test_workspaces_are_isolated(archive: Archive) -> None:
    a, b = Corpus(), Corpus()
    mine = a.msg("C1", 1, "The staging password lives in the vault under ops/staging.")
    theirs = b.msg("C1", 2, "Lunch is pizza on Friday.")
    await archive.add([mine, theirs, replace(theirs, team_id=a.team)])
    query = "staging password vault"
    assert await lexical(archive, b.team, query) == []
    assert key(mine) not in await dense(archive, b.team, query)
    assert {h.message.team_id for h in await archive.search(b.team, query, audience=EVERYONE)} == {
        b.team
    }
    assert (await archive.search(a.team, query, audience=EVERYONE))[0].message == mine
    await archive.delete_team(a.team)
    assert await archive.search(a.team, query, audience=EVERYONE) == []
    assert await archive.count(b.team) == 1
    assert await dense(archive, b.team, "pizza") == [key(theirs)]


async def test_a_40000_character_message(archive: Archive) -> None:
    c = Corpus()
    body = "Kubernetes upgrade notes: drain nodes first, then cordon. " * 700
    long_text = (body[: 40_000 - 40] + " the rollback keyword is quokkaberry.").ljust(40_000, ".")
    big = c.msg("C1", 1, long_text)
    small = c.msg("C1", 2, "How do we upgrade the cluster?", thread=1)
    await archive.add([big, small])
    assert len(big.text) == 40_000
    assert await archive.get(c.team, "C1", big.ts) == big
    assert await lexical(archive, c.team, "quokkaberry") == [key(big)]
    hits = await archive.search(c.team, "quokkaberry rollback", audience=EVERYONE, limit=1)
    assert hits[0].message.text == long_text


def test_audience() -> None:
    everyone = Audience.everyone()
    assert everyone.allows("G1", "group") and everyone.allows("C1", "channel")
    answer = Audience(frozenset({"G1"}))
    assert answer.allows("C9", "channel") and answer.allows("G1", "group")
    assert not answer.allows("G2", "group") and not answer.allows("D1", "im")
    assert not Audience(frozenset({"G1"}), public=False).allows("C9", "channel")
    assert Audience(frozenset(), public=False).sees_nothing
    coerced = Audience({"G1"})  # type: ignore[arg-type]
    assert coerced.channels == frozenset({"G1"}) and hash(coerced) == hash(answer)


class CountingEmbedder:
    """The real embedder, counting the texts it embeds."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.name, self.dim = inner.name, inner.dim
        self._inner = inner
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self._inner.embed(texts)


async def test_a_date_the_question_names_ranks_that_dates_messages_higher(
    tmp_path: Path, embedder: OnnxEmbedder, any_engine: AsyncEngine
) -> None:
    c = Corpus()
    december = 24 * 30  # hours after BASE (2023-11-14 22:13 UTC): 2023-12-14
    november = [
        c.msg("C1", i, f"Launch plan v{i}: the launch plan for the mobile launch is final.")
        for i in range(1, 6)
    ]
    target = c.msg("C1", december, "We moved the launch to after the holidays.")
    counting = CountingEmbedder(embedder)
    dated = await Archive.open_embedded(tmp_path / "dated", counting, any_engine)
    undated = await Archive.open_embedded(
        tmp_path / "undated", embedder, any_engine, Ranking(date_weight=0)
    )
    try:
        for arc in (dated, undated):
            await arc.add([*november, target])
        question = "what was the launch plan in December 2023?"
        before = counting.texts
        assert keys(await dated.search(c.team, question, audience=EVERYONE, limit=1)) == [
            key(target)
        ]
        assert counting.texts == before + 1  # one query embedding for both date scopes
        assert key(target) not in keys(
            await undated.search(c.team, question, audience=EVERYONE, limit=3)
        )
        hits = await dated.search(c.team, question, audience=EVERYONE, limit=6)
        assert set(keys(hits)) == {key(m) for m in [*november, target]}  # others still found
        in_november = SearchFilters(before=float(ts(december)) - 1)
        filtered = await dated.search(c.team, question, audience=EVERYONE, filters=in_november)
        assert key(target) not in keys(filtered) and filtered  # a filter still holds
    finally:
        await dated.close()
        await undated.close()
