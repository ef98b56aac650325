"""Uninstall forgets everything about a workspace, in every store and every process, and nothing
of another: every SQL table (listed from the metadata, so a new table cannot be forgotten), every
Chroma collection and every Redis key Lore writes, with a turn in flight (held by the model) and
an early edit waiting in Redis; in single-token mode (two processes) and in OAuth mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
import pytest
from redis.asyncio import Redis
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy import Table, inspect, select
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import Lore
from emulator import EmulatorConfig, SlackEmulator
from memory import channel_kinds, lexical
from memory.archive import ArchivedMessage, collection_name
from memory.blocks import MemoryScope
from memory.db import Base
from memory.dedupe import RedisOnceKeys
from memory.early_changes import RedisEarlyChanges
from memory.edits import Insert
from memory.feedback import Verdict, Vote
from memory.notes import NoteSource
from memory.redis_keys import KEY_PREFIXES, RedisTeamKeys
from memory.reflection_state import ReflectionState, Run
from memory.summaries import ThreadSummary
from tests.conftest import REDIS_URL, new_team
from tests.fake_anthropic import FakeAnthropic, delay, reply, text, tool_use
from tests.harness import archived, eventually, lore_settings, start_lore_on
from tests.test_oauth import install, start_oauth_lore

BOT = "<@U0LORE>"
FTS_INDEX = "archive_fts"  # SQLite's full-text index of archive_messages, kept by its triggers
NOTES_FTS = "notes_fts"  # SQLite's full-text index of notes (a copy of their text), by triggers
NO_TEAM_TABLES = {"slack_oauth_states": "install links in flight, before any workspace is known"}
EARLY_TS = "1700000000.000999"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def lore_tables(lore: Lore) -> list[Table]:
    """Every table Lore writes, from the metadata its stores declare."""
    metadata = [Base.metadata, lexical._metadata, channel_kinds._metadata]
    if lore.stores.installations is not None:
        metadata.append(lore.stores.installations.store.metadata)
        metadata.append(lore.stores.installations.states.metadata)
    return [table for meta in metadata for table in meta.sorted_tables]


async def database_tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


def _chroma(url: str) -> chromadb.api.ClientAPI:
    parts = urlsplit(url)
    return chromadb.HttpClient(host=parts.hostname or "127.0.0.1", port=parts.port or 8000)


def _collection_contents(url: str, name: str) -> Any:
    client = _chroma(url)
    if name not in [c.name for c in client.list_collections()]:
        return None
    got = client.get_collection(name).get(include=["documents", "metadatas", "embeddings"])
    rows = zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
    return sorted((i, d, json.dumps(m, sort_keys=True), list(map(float, e))) for i, d, m, e in rows)


async def footprint(lore: Lore, redis: Redis, team_id: str) -> dict[str, Any]:
    """Everything Lore holds about one workspace: rows per table, the Chroma collection's
    records, and Redis keys with their serialized values. Fails on a table that has no team_id
    column and is not known to hold no workspace's data."""
    held: dict[str, Any] = {}
    tables = lore_tables(lore)
    present = await database_tables(lore.stores.engine)
    missing = {t.name for t in tables} - present
    assert not missing - {"slack_oauth_states"}, f"tables not created: {missing}"
    unlisted = {
        n for n in present - {t.name for t in tables} if not n.startswith((FTS_INDEX, NOTES_FTS))
    }
    assert not unlisted, f"tables this test does not know: {unlisted}"
    async with lore.stores.engine.connect() as connection:
        if NOTES_FTS in present:
            query = sql(f"SELECT note_id, text FROM {NOTES_FTS} WHERE team_id = :team")
            rows = (await connection.execute(query, {"team": team_id})).all()
            if rows:
                held[f"sql:{NOTES_FTS}"] = sorted(repr(tuple(row)) for row in rows)
        for table in tables:
            if "team_id" not in table.c:
                assert table.name in NO_TEAM_TABLES, f"{table.name} has no team_id column"
                continue
            query = select(table).where(table.c.team_id == team_id)
            rows = (await connection.execute(query)).all()
            if rows:
                held[f"sql:{table.name}"] = sorted(repr(tuple(row)) for row in rows)
    chroma_url = lore.settings.chroma_url
    assert chroma_url is not None
    name = collection_name(team_id, lore.stores.archive._embedder.name)
    records = await asyncio.to_thread(_collection_contents, chroma_url, name)
    if records is not None:
        held[f"chroma:{name}"] = records
    collections = await asyncio.to_thread(lambda: _chroma(chroma_url).list_collections())
    others = [c.name for c in collections if team_id.lower() in c.name.lower() and c.name != name]
    assert others == [], f"other collections name {team_id}: {others}"
    keys = await RedisTeamKeys(redis).keys(team_id)
    anywhere = sorted([raw.decode() async for raw in redis.scan_iter(match=f"*{team_id}*")])
    assert anywhere == keys, "a key holds the team id other than as a part of a lore: key"
    for key in keys:
        assert key.startswith(KEY_PREFIXES), f"{key} has a prefix the forgetting test misses"
        if not key.startswith(("lore:lock:", "lore:lease:")):  # a held lock's token is random
            held[f"redis:{key}"] = await redis.dump(key)
        else:
            held[f"redis:{key}"] = "held"
    return held


async def fill_other_workspace(lore: Lore, redis: Redis) -> str:
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
    await stores.blocks.edit(
        team_id, "org", Insert("Other workspace fact."), scope=MemoryScope.everything()
    )
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
    await stores.exclusions.exclude(team_id, "C0SECRET", "U0OTHER")
    await stores.summaries.store(thread_summary(team_id, "C0OTHER"), based_on=None)
    await stores.notes.add(
        team_id,
        text="Falcon owns the payments on-call.",
        sources=[NoteSource("C0OTHER", "1700000000.000100")],
        channel_type="channel",
        written_by="admin:U0OTHER",
    )
    await lore.services.backfill.state.request(team_id, "C0OTHER")
    await ReflectionState(stores.engine).reopen(team_id, "C0OTHER", "1700000000.000100")
    await ReflectionState(stores.engine).spend(team_id, "2026-01-01", 1200)
    if stores.installations is not None:
        await stores.installations.store.async_save(
            Installation(
                app_id="A0LORE",
                user_id="U0OTHER",
                team_id=team_id,
                bot_token="xoxb-other-workspace",
                bot_id="B0OTHER",
                bot_user_id="U0LORE",
            )
        )
    await RedisEarlyChanges(redis).keep((team_id, "C0OTHER", EARLY_TS), "edited elsewhere")
    await RedisOnceKeys(redis).claim(f"event:{team_id}:EvOTHER")
    return team_id


async def fill_workspace(lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic) -> str:
    """The workspace learns a fact, archives, votes, excludes a channel, keeps a thread's
    summary, queues a backfill, keeps an early deletion in Redis and has a turn in flight (the
    model holds its answer); the ts of that turn's question."""
    team = emulator.config.team_id
    await emulator.post_message("U0CAROL", "C0GENERAL", "Falcon owns the payments on-call.")
    fake_llm.script(
        reply(tool_use("memory_insert", {"label": "org", "text": "Deploys freeze on Fridays."})),
        reply(text("Noted: deploys freeze on Fridays.")),
    )
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} deploys freeze Fridays")
    answer = (await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20))[0]
    await emulator.press_message_button(
        "U0BOB", "C0GENERAL", answer["ts"], "lore_feedback", "helpful"
    )
    await archived(lore, team, 3)
    await eventually(lambda: _voted(lore, team))
    await lore.stores.exclusions.exclude(team, "C0RANDOM", "U0ALICE")
    await lore.stores.summaries.store(thread_summary(team, "C0GENERAL"), based_on=None)
    await lore.stores.notes.add(
        team,
        text="Deploys freeze on Fridays.",
        sources=[NoteSource("C0GENERAL", asked["ts"])],
        channel_type="channel",
        written_by="admin:U0ALICE",
    )
    await lore.services.backfill.state.request(team, "C0LEADS")
    reflection = ReflectionState(lore.stores.engine)
    await reflection.reopen(team, "C0GENERAL", asked["ts"])
    await reflection.advance(team, {"C0GENERAL": float(asked["ts"])})
    await reflection.spend(team, "2026-01-01", 1200)
    await reflection.record_run(Run(f"run-{team}", team, {}, [], 0), [])
    deleted = {"type": "message", "subtype": "message_deleted", "channel": "C0GENERAL"}
    assert await emulator.deliver_event({**deleted, "deleted_ts": EARLY_TS}) == 200
    early = f"lore:early-change:{team}:C0GENERAL:{EARLY_TS}"
    redis = lore.stores.redis
    assert redis is not None
    await eventually(lambda: _exists(redis, early))

    requests = len(fake_llm.requests)
    fake_llm.script(delay(600, reply(text("A late answer that must never be posted."))))
    pending = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} what do we freeze?")
    await eventually(lambda: _more_requests(fake_llm, requests))
    return str(pending["ts"])


def thread_summary(team_id: str, channel_id: str) -> ThreadSummary:
    """A long thread's stored summary (what the summariser writes)."""
    return ThreadSummary(
        team_id=team_id,
        channel_id=channel_id,
        thread_ts="1700000000.000100",
        text="The payments on-call rotates weekly.",
        upto_ts="1700000000.000300",
        covers=("1700000000.000100", "1700000000.000300"),
    )


async def _voted(lore: Lore, team: str) -> bool:
    return await lore.stores.feedback.counts(team) != (0, 0)


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def _more_requests(fake_llm: FakeAnthropic, before: int) -> bool:
    return len(fake_llm.requests) > before


async def assert_forgotten(
    receiver: Lore, workers: list[Lore], redis: Redis, team: str, other: str, before: Any
) -> None:
    """Wait for the forgetting to finish, then check the workspace is gone everywhere and
    the other workspace untouched; the workers' cancelled work wrote nothing afterwards."""
    await receiver.services.background.drain()
    for lore in workers:
        assert lore.services.turns.depth == 0
        await lore.services.background.drain()
        await lore.services.archiving.drain()
    assert await footprint(receiver, redis, team) == {}
    assert await footprint(receiver, redis, other) == before


async def test_uninstall_in_one_token_mode_forgets_everything_in_every_process(
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    chroma_server: str,
    redis: Redis,
    tmp_path: Path,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    shared = {"database_url": f"sqlite:///{tmp_path / 'lore.db'}", "chroma_url": chroma_server}
    receiver = await start_lore_on(emulator, lore_settings(tmp_path / "a", fake_llm, **shared))
    worker = await start_lore_on(emulator, lore_settings(tmp_path / "b", fake_llm, **shared))
    try:
        other = await fill_other_workspace(receiver, redis)
        before = await footprint(receiver, redis, other)
        thread_ts = await fill_workspace(worker, emulator, fake_llm)
        held = await footprint(receiver, redis, team)
        assert {name.split(":")[1] for name in held if name.startswith("sql:")} >= {
            "archive_messages",
            "memory_block_versions",
            "conversations",
            "reply_feedback",
            "excluded_channels",
            "backfill_channels",
            "thread_summaries",
            "notes",
            "note_sources",
            "note_vectors",
            "notes_fts",
            "reflection_channels",
            "reflection_runs",
            "reflection_threads",
            "reflection_usage",
        }
        assert any(name.startswith("chroma:") for name in held)
        assert any(name.startswith("redis:lore:early-change:") for name in held)
        assert any(name.startswith("redis:lore:lock:turn:") for name in held), "turn in flight"

        emulator.config.events_url = f"{receiver.url}/slack/events"  # another process hears it
        assert await emulator.uninstall_app() == 200
        await assert_forgotten(receiver, [worker], redis, team, other, before)
        replies = emulator.thread("C0GENERAL", thread_ts)[1:]
        assert not any("late answer" in r.get("text", "") for r in replies)

        # Work is taken again afterwards: a re-install starts clean.
        asked = await emulator.post_message("U0CAROL", "C0RANDOM", "A fresh start.")
        await archived(receiver, team, 1)
        assert await receiver.stores.archive.get(team, "C0RANDOM", asked["ts"]) is not None
    finally:
        await worker.stop()
        await receiver.stop()


def cached_teams(lore: Lore) -> set[str | None]:
    assert lore.bolt is not None
    authorize = lore.bolt._async_authorize
    assert isinstance(authorize, AsyncInstallationStoreAuthorize)
    return {result.team_id for result in authorize.authorize_result_cache.values()}


@pytest.fixture
async def oauth_emulator() -> AsyncIterator[SlackEmulator]:
    emu = SlackEmulator(
        EmulatorConfig(
            events_url=None,
            retry_delays=(0.3, 0.3, 0.3),
            team_id=new_team(),
            client_id=f"{time.time_ns() % 10**10}.{new_team()[1:]}",
        )
    )
    await emu.start()
    yield emu
    await emu.stop()


async def test_uninstall_in_oauth_mode_forgets_grid_installations_too(
    oauth_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    chroma_server: str,
    redis: Redis,
    tmp_path: Path,
) -> None:
    emulator = oauth_emulator
    team = emulator.config.team_id
    lore = await start_oauth_lore(
        emulator,
        tmp_path,
        chroma_url=chroma_server,
        anthropic_api_key="key-" + team,
        anthropic_base_url=fake_llm.base_url,
    )
    try:
        await install(lore)
        assert lore.stores.installations is not None
        grid = Installation(
            app_id="A0LORE",
            user_id="U0ALICE",
            team_id=team,
            enterprise_id="E" + team[1:],
            bot_token="xoxb-grid-install",
            bot_id="B0LORE",
            bot_user_id="U0LORE",
        )
        await lore.stores.installations.store.async_save(grid)
        other = await fill_other_workspace(lore, redis)
        before = await footprint(lore, redis, other)
        thread_ts = await fill_workspace(lore, emulator, fake_llm)
        held = await footprint(lore, redis, team)
        assert {"sql:slack_installations", "sql:slack_bots", "sql:thread_summaries"} <= set(held)
        assert any(grid.enterprise_id in row for row in held["sql:slack_installations"])

        assert team in cached_teams(lore)  # Bolt's authorize cache, one auth.test per token
        assert await emulator.revoke_tokens(bot=True) == 200
        await assert_forgotten(lore, [lore], redis, team, other, before)
        assert team not in cached_teams(lore)
        replies = emulator.thread("C0GENERAL", thread_ts)[1:]
        assert not any("late answer" in r.get("text", "") for r in replies)
        async with lore.stores.engine.connect() as connection:
            rows = await connection.execute(
                sql("SELECT count(*) FROM slack_installations WHERE enterprise_id = :e"),
                {"e": grid.enterprise_id},
            )
            assert rows.scalar_one() == 0
    finally:
        await lore.stop()
