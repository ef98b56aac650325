"""Stores come and go: Lore keeps running, reports what it lacks on /readyz, and once a store is
back it stores everything it acknowledged meanwhile, once."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import chromadb
import numpy as np
import redis.asyncio as aioredis
from chromadb.config import Settings as ChromaSettings

from emulator import EmulatorConfig, SlackEmulator
from memory.archive import collection_name, message_key
from memory.blocks import MemoryBlocks, MemoryScope
from memory.chroma_client import open_http
from memory.db import make_engine
from memory.embeddings import MODEL_NAME, OnnxEmbedder
from memory.locks import LocalLocks
from tests.conftest import new_team
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import eventually, serve_env, user_text
from tests.processes import (
    ChromaServer,
    PostgresServer,
    RedisServer,
    chroma_worker_of,
    held,
    lexical_rows,
    serving,
)
from tests.vector_checks import indexed_texts, stored_vectors, vectors_are_of

CHANNEL = "C0GENERAL"


def channel_texts(emulator: SlackEmulator) -> dict[str, str]:
    """ts -> text of every message in the channel now."""
    return {m["ts"]: m["text"] for m in emulator.messages(CHANNEL)}


def vectors(data_dir: Path, team: str) -> dict[str, np.ndarray]:
    """Record id -> vector in the embedded Chroma of a stopped Lore."""
    client = chromadb.PersistentClient(
        str(data_dir / "chroma"), ChromaSettings(anonymized_telemetry=False)
    )
    return stored_vectors(client.get_collection(collection_name(team, MODEL_NAME)))


async def test_a_killed_chroma_worker_is_replaced_and_what_it_held_is_stored(
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    embedder: OnnxEmbedder,
    tmp_path: Path,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    # fp32: its vectors do not depend on the batch a text was embedded in (int8's do, a little)
    env = serve_env(emulator, fake_llm, data, REDIS_URL="", LORE_EMBEDDING_PRECISION="fp32")

    async def archived_as_in_slack() -> bool:
        return lexical_rows(data, team, CHANNEL) == channel_texts(emulator)

    async with serving(env) as process:
        emulator.config.events_url = f"http://127.0.0.1:{env['PORT']}/slack/events"
        first = [
            (await emulator.post_message("U0ALICE", CHANNEL, f"before the fault {n}"))["ts"]
            for n in range(3)
        ]
        await eventually(archived_as_in_slack, within=60)
        stored_before = lexical_rows(data, team, CHANNEL)

        worker = chroma_worker_of(process.pid)
        with held(worker):  # the writes below wait in the worker, which then dies
            for n in range(5):
                await emulator.post_message("U0BOB", CHANNEL, f"while the worker dies {n}")
            await emulator.edit_message(CHANNEL, first[0], "before the fault 0, edited")
            await emulator.delete_message(CHANNEL, first[1])
            await emulator.drain()
            held_back = lexical_rows(data, team, CHANNEL)  # (a deletion's SQL half may be done)
            assert set(held_back) <= set(stored_before)
            assert held_back[first[0]] == stored_before[first[0]]
            os.kill(worker, signal.SIGKILL)
        for n in range(3):
            await emulator.post_message("U0CAROL", CHANNEL, f"after the fault {n}")

        await eventually(archived_as_in_slack, within=90)
        assert chroma_worker_of(process.pid) != worker
        assert process.returncode is None
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0

    expected = channel_texts(emulator)
    assert len(expected) == 3 - 1 + 5 + 3
    assert lexical_rows(data, team, CHANNEL) == expected
    assert vectors_are_of(vectors(data, team), indexed_texts(data, team), embedder)


BOT = "<@U0LORE>"


async def readiness(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return response.status, await response.json()


def org_versions(data_dir: Path, team: str) -> list[str]:
    """The values of the workspace's `org` block, oldest version first."""
    with sqlite3.connect(f"file:{data_dir / 'lore.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT value FROM memory_block_versions WHERE team_id = ? AND label = 'org' "
            "ORDER BY version",
            (team,),
        ).fetchall()
    return [value for (value,) in rows]


def bot_replies(emulator: SlackEmulator, ts: str) -> list[str]:
    return [m["text"] for m in emulator.thread(CHANNEL, ts) if m.get("bot_id")]


async def test_redis_stopped_and_started_again_answers_once_and_loses_no_edit(
    fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    emulator = SlackEmulator(
        EmulatorConfig(events_url=None, team_id=new_team(), retry_delays=(1.0, 3.0, 10.0))
    )
    await emulator.start()
    team = emulator.config.team_id
    data = tmp_path / "lore"
    in_flight = asyncio.Event()
    go_on = asyncio.Event()

    async def respond(request: dict[str, Any]) -> Any:
        last = request["messages"][-1]["content"]
        if isinstance(last, list) and last[0].get("type") == "tool_result":
            return reply(text("Saved."))
        number = re.search(r"fact number (\d+)", user_text(request))
        assert number is not None
        if number[1] == "1":  # the turn running when Redis stops
            in_flight.set()
            await go_on.wait()
        return reply(tool_use("memory_insert", {"label": "org", "text": f"Fact {number[1]}"}))

    fake_llm.respond_with(respond)
    env = serve_env(emulator, fake_llm, data, REDIS_URL=redis.url, LORE_MAX_CONCURRENT_TURNS="1")
    url = f"http://127.0.0.1:{env['PORT']}"
    try:
        async with serving(env) as process:
            emulator.config.events_url = f"{url}/slack/events"

            async def ask(n: int) -> str:
                posted = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} fact number {n}")
                return str(posted["ts"])

            asked = [await ask(0)]
            await emulator.wait_for_reply(CHANNEL, asked[0], timeout=30)
            asked.append(await ask(1))  # running: its model step waits for `go_on`
            await asyncio.wait_for(in_flight.wait(), timeout=30)
            asked.append(await ask(2))  # queued behind it (one turn at a time)
            await emulator.drain()

            redis.stop()

            async def not_ready() -> bool:
                status, body = await readiness(url)
                return status == 503 and body["checks"]["redis"] != "ok"

            await eventually(not_ready, within=30)
            go_on.set()  # the running turn now edits memory while Redis is away
            asked.append(await ask(3))  # refused with a 500 (nothing kept); Slack retries it

            async def refused() -> bool:
                records = [d for d in emulator.deliveries if d.body["event"].get("ts") == asked[3]]
                return bool(records) and all(d.attempts and not d.attempts[0].ok for d in records)

            await eventually(refused, within=30)
            assert process.returncode is None

            redis.start()

            async def ready() -> bool:
                status, _ = await readiness(url)
                return status == 200

            await eventually(ready, within=30)
            asked.append(await ask(4))
            for ts in asked:
                await emulator.wait_for_reply(CHANNEL, ts, timeout=60)
            await emulator.drain()
            await fake_llm.wait_for_requests(2 * len(asked), timeout=30)
            assert process.returncode is None

            # every question answered once; every edit applied once, none lost
            for ts in asked:
                assert bot_replies(emulator, ts) == ["Saved."], ts
            assert len(fake_llm.requests) == 2 * len(asked)
            versions = org_versions(data, team)
            facts = [line for line in versions[-1].splitlines() if line.startswith("Fact")]
            assert sorted(facts) == [f"Fact {n}" for n in range(len(asked))]
            assert len(versions) == 1 + len(asked)  # the initial block and one version an edit

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=60) == 0
        # the intake entries it could not remove while Redis was away were removed later
        client = aioredis.Redis.from_url(redis.url)
        try:
            assert [key async for key in client.scan_iter(match="lore:intake:*")] == []
        finally:
            await client.aclose()
    finally:
        go_on.set()
        redis.stop()
        await emulator.stop()


async def metric(url: str, token: str, name: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics", headers=headers) as response:
            assert response.status == 200
            body = await response.text()
    found = re.search(rf"^{name} (\S+)$", body, re.M)
    assert found is not None, name
    return float(found[1])


async def test_a_chroma_server_restarted_during_ingest_gets_everything_once_it_is_back(
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    embedder: OnnxEmbedder,
    tmp_path: Path,
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    chroma = ChromaServer(tmp_path / "chroma")
    chroma.start()
    token = secrets.token_hex(16)  # 32 characters, the least Lore accepts
    env = serve_env(
        emulator,
        fake_llm,
        data,
        REDIS_URL="",
        CHROMA_URL=chroma.url,
        LORE_EMBEDDING_PRECISION="fp32",  # vectors that do not depend on their batch
        LORE_METRICS_TOKEN=token,
    )
    url = f"http://127.0.0.1:{env['PORT']}"

    async def archived_as_in_slack() -> bool:
        return lexical_rows(data, team, CHANNEL) == channel_texts(emulator)

    try:
        async with serving(env) as process:
            emulator.config.events_url = f"{url}/slack/events"
            first = [
                (await emulator.post_message("U0ALICE", CHANNEL, f"before the restart {n}"))["ts"]
                for n in range(3)
            ]
            await eventually(archived_as_in_slack, within=60)
            stored_before = lexical_rows(data, team, CHANNEL)

            chroma.stop()
            for n in range(8):
                await emulator.post_message("U0BOB", CHANNEL, f"while Chroma restarts {n}")
            await emulator.edit_message(CHANNEL, first[0], "before the restart 0, edited")
            await emulator.delete_message(CHANNEL, first[1])
            await emulator.drain()

            async def waiting_for_the_store() -> bool:
                return await metric(url, token, "lore_archive_retrying") > 0

            await eventually(waiting_for_the_store, within=30)
            assert await metric(url, token, "lore_intake_pending") == 8 + 2
            held_back = lexical_rows(data, team, CHANNEL)  # (a deletion's SQL half may be done)
            assert held_back[first[0]] == stored_before[first[0]]
            assert not [t for t in held_back.values() if t.startswith("while")]
            chroma.start()

            await eventually(archived_as_in_slack, within=90)

            async def through() -> bool:
                retrying = await metric(url, token, "lore_archive_retrying")
                return retrying == 0 and await metric(url, token, "lore_intake_pending") == 0

            await eventually(through, within=30)
            assert await metric(url, token, "lore_archive_retries_total") > 0
            assert await metric(url, token, "lore_archive_retry_wait_seconds_total") > 0
            assert process.returncode is None

        expected = channel_texts(emulator)
        assert len(expected) == 3 - 1 + 8
        store = await open_http(chroma.url)
        try:
            collection = await store.collection(collection_name(team, MODEL_NAME), create=False)
            assert collection is not None
            assert await collection.count() == len(expected)
            keys = [message_key(CHANNEL, ts) for ts in expected]
            stored = {record.id: record.document for record in await collection.get(keys)}
            assert stored == dict.fromkeys(keys, "")  # vectors only: the text lives in SQL
        finally:
            await store.close()
        address = urlsplit(chroma.url)
        client = chromadb.HttpClient(host=address.hostname or "", port=address.port or 8000)
        held = stored_vectors(client.get_collection(collection_name(team, MODEL_NAME)))
        assert vectors_are_of(held, indexed_texts(data, team), embedder)
    finally:
        chroma.stop()


async def test_postgresql_restarted_mid_traffic_the_turn_caught_apologises_and_later_ones_work(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    postgres = PostgresServer()
    in_flight = asyncio.Event()
    go_on = asyncio.Event()

    async def respond(request: dict[str, Any]) -> Any:
        last = request["messages"][-1]["content"]
        if isinstance(last, list) and last[0].get("type") == "tool_result":
            return reply(text("Saved."))
        number = re.search(r"fact number (\d+)", user_text(request))
        assert number is not None
        if number[1] == "1":  # the turn running when PostgreSQL goes away
            in_flight.set()
            await go_on.wait()
        return reply(tool_use("memory_insert", {"label": "org", "text": f"Fact {number[1]}"}))

    fake_llm.respond_with(respond)
    try:
        postgres.init()
        postgres.start()
        env = serve_env(
            emulator, fake_llm, tmp_path / "lore", REDIS_URL="", DATABASE_URL=postgres.url
        )
        url = f"http://127.0.0.1:{env['PORT']}"
        async with serving(env) as process:
            emulator.config.events_url = f"{url}/slack/events"

            async def ask(n: int) -> str:
                posted = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} fact number {n}")
                return str(posted["ts"])

            first = await ask(0)
            await emulator.wait_for_reply(CHANNEL, first, timeout=30)
            running = await ask(1)
            await asyncio.wait_for(in_flight.wait(), timeout=30)

            postgres.stop()

            async def not_ready() -> bool:
                status, body = await readiness(url)
                return status == 503 and body["checks"]["database"] != "ok"

            await eventually(not_ready, within=30)
            go_on.set()  # the running turn now edits memory without its database
            await emulator.wait_for_reply(CHANNEL, running, timeout=30)

            postgres.start()

            async def ready() -> bool:
                status, _ = await readiness(url)
                return status == 200

            await eventually(ready, within=30)
            after = await ask(2)  # no restart of Lore in between
            await emulator.wait_for_reply(CHANNEL, after, timeout=30)
            assert process.returncode is None

            for ts in (first, after):
                assert bot_replies(emulator, ts) == ["Saved."], ts
            [apology] = bot_replies(emulator, running)
            assert apology.startswith("Sorry") and "Traceback" not in apology
            engine = make_engine(postgres.url)
            try:
                blocks = MemoryBlocks(engine, LocalLocks())
                history = await blocks.history(team, "org", MemoryScope.everything())
            finally:
                await engine.dispose()
            assert [b.version for b in history] == [1, 2, 3]
            assert history[-1].value.splitlines()[-2:] == ["Fact 0", "Fact 2"]

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    finally:
        go_on.set()
        postgres.remove()
