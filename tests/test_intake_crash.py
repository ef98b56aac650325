"""Nothing acknowledged is lost: Lore is SIGKILLed right after Slack got its 200s, with the
messages, edits and deletions still unarchived (the store they wait for is held still), and
every one of them is archived exactly once afterwards: by the restarted process (one process,
embedded stores), or by another live process (two processes sharing Redis, PostgreSQL and a
Chroma server)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
from chromadb.config import Settings as ChromaSettings

from emulator import SlackEmulator
from memory.archive import Archive, collection_name, message_key
from memory.embeddings import OnnxEmbedder
from memory.messages import indexed_text
from tests.chroma_server import free_port
from tests.conftest import POSTGRES_URL, postgres_engine_or_skip
from tests.fake_anthropic import FakeAnthropic
from tests.harness import eventually, metric_at, serve_env
from tests.processes import chroma_process, chroma_worker_of, held, lexical_rows, serving
from tests.vector_checks import indexed_texts, stored_vectors, vectors_are_of

CHANNEL = "C0GENERAL"
NEW_MESSAGES = 12


def channel_texts(emulator: SlackEmulator) -> dict[str, str]:
    """ts -> text of every message in the channel now (as edited, without the deleted)."""
    return {m["ts"]: m["text"] for m in emulator.messages(CHANNEL)}


def edited_event(ts: str, text: str, event_ts: str) -> dict[str, Any]:
    """Slack's `message_changed` for an edit of message `ts` made at `event_ts`."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": CHANNEL,
        "channel_type": "channel",
        "ts": event_ts,
        "event_ts": event_ts,
        "message": {"type": "message", "user": "U0BOB", "text": text, "ts": ts},
    }


async def post_under_fault(emulator: SlackEmulator, standing: list[str]) -> dict[str, str]:
    """New messages, and edits and deletions of both archived (`standing`) and new ones, all
    acknowledged (every delivery answered 200 at its first attempt). One new message's two
    edits are delivered the later first (Slack's deliveries arrive in any order): ts -> the
    text it must end with, which the emulator's copy does not show."""
    already = len(emulator.deliveries)
    posted = [
        (await emulator.post_message("U0BOB", CHANNEL, f"decision {n}: ship the beta on day {n}"))[
            "ts"
        ]
        for n in range(NEW_MESSAGES)
    ]
    await emulator.edit_message(CHANNEL, standing[0], "standing note 0, corrected")
    await emulator.delete_message(CHANNEL, standing[1])
    await emulator.edit_message(CHANNEL, posted[0], "decision 0: ship the beta on day 9")
    await emulator.edit_message(CHANNEL, posted[0], "decision 0: ship the beta on day 10")
    await emulator.delete_message(CHANNEL, posted[1])
    await emulator.edit_message(CHANNEL, posted[2], "decision 2: postponed")
    await emulator.delete_message(CHANNEL, posted[2])
    earlier, later = emulator.workspace.clock.next(), emulator.workspace.clock.next()
    newer = edited_event(posted[3], "decision 3: ship the beta on day 30", later)
    assert await emulator.deliver_event(newer) == 200
    older = edited_event(posted[3], "decision 3: ship the beta on day 20", earlier)
    assert await emulator.deliver_event(older) == 200
    await emulator.drain()
    deliveries = emulator.deliveries[already:]
    assert len(deliveries) == NEW_MESSAGES + 7
    assert all([a.status for a in d.attempts] == [200] for d in deliveries)
    return {posted[3]: "decision 3: ship the beta on day 30"}


def assert_held_back(archived: dict[str, str], standing: list[str]) -> None:
    """Nothing posted under the fault is archived, and the edit of a standing message is not."""
    assert set(archived) <= set(standing)
    assert archived[standing[0]] == "standing note 0"


async def test_a_restart_after_sigkill_archives_every_acknowledged_message_once(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    # one process: embedded stores; fp32 vectors, which do not depend on their batch
    env = serve_env(emulator, fake_llm, data, REDIS_URL="", LORE_EMBEDDING_PRECISION="fp32")

    async with serving(env) as process:
        emulator.config.events_url = f"http://127.0.0.1:{env['PORT']}/slack/events"
        standing = [
            (await emulator.post_message("U0ALICE", CHANNEL, f"standing note {n}"))["ts"]
            for n in range(3)
        ]
        await eventually(lambda: _holds(data, team, channel_texts(emulator)), within=60)

        with held(chroma_worker_of(process.pid)):  # every archive write now waits
            delivered_raw = await post_under_fault(emulator, standing)
            # none of it reached the archive: only the intake holds it (a deletion may have
            # done its SQL half, which comes first)
            assert_held_back(lexical_rows(data, team, CHANNEL), standing)
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    expected = {**channel_texts(emulator), **delivered_raw}
    assert len(expected) == 3 - 1 + NEW_MESSAGES - 2
    restarted = {**env, "PORT": str(free_port())}
    async with serving(restarted) as process:
        await eventually(lambda: _holds(data, team, expected), within=90)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    assert lexical_rows(data, team, CHANNEL) == expected
    client = chromadb.PersistentClient(
        str(data / "chroma"), ChromaSettings(anonymized_telemetry=False)
    )
    vectors = stored_vectors(client.get_collection(collection_name(team, embedder.name)))
    assert sorted(vectors) == sorted(message_key(CHANNEL, ts) for ts in expected)
    assert vectors_are_of(vectors, indexed_texts(data, team), embedder)


async def _holds(data: Path, team: str, expected: dict[str, str]) -> bool:
    return lexical_rows(data, team, CHANNEL) == expected


async def test_another_process_archives_what_a_sigkilled_one_acknowledged(
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    embedder: OnnxEmbedder,
    tmp_path: Path,
) -> None:
    engine = await postgres_engine_or_skip()
    emulator = team_emulator
    team = emulator.config.team_id
    reader: Archive | None = None
    with chroma_process(tmp_path / "chroma") as (chroma_url, chroma_pid):
        envs = [
            serve_env(
                emulator,
                fake_llm,
                tmp_path / f"lore{n}",
                DATABASE_URL=POSTGRES_URL,
                CHROMA_URL=chroma_url,
                LORE_INTAKE_LEASE_SECONDS="2",
                LORE_EMBEDDING_PRECISION="fp32",  # vectors that do not depend on their batch
            )
            for n in range(2)
        ]
        try:
            reader = await Archive.open_http(chroma_url, embedder, engine)

            async def holds(expected: dict[str, str]) -> bool:
                assert reader is not None
                if await reader.count(team) != len(expected):
                    return False
                for ts, text in expected.items():
                    stored = await reader.get(team, CHANNEL, ts)
                    if stored is None or stored.text != text:
                        return False
                return True

            async with serving(envs[0]) as dying, serving(envs[1]):
                # every event goes to the first process; the second only looks for orphans
                emulator.config.events_url = f"http://127.0.0.1:{envs[0]['PORT']}/slack/events"
                standing = [
                    (await emulator.post_message("U0ALICE", CHANNEL, f"standing note {n}"))["ts"]
                    for n in range(3)
                ]
                await eventually(lambda: holds(channel_texts(emulator)), within=60)
                before = channel_texts(emulator)

                with held(chroma_pid):  # every archive write now waits
                    delivered_raw = await post_under_fault(emulator, standing)
                    os.killpg(dying.pid, signal.SIGKILL)
                    await dying.wait()
                    assert reader is not None
                    now = {*before, *channel_texts(emulator)}
                    stored = {ts: await reader.get(team, CHANNEL, ts) for ts in now}
                    assert await reader.count(team) <= len(before)
                    assert_held_back(
                        {ts: m.text for ts, m in stored.items() if m is not None}, standing
                    )

                expected = {**channel_texts(emulator), **delivered_raw}
                await eventually(lambda: holds(expected), within=90)

            assert len(expected) == 3 - 1 + NEW_MESSAGES - 2
            address = urlsplit(chroma_url)
            client = chromadb.HttpClient(host=address.hostname or "", port=address.port or 8000)
            vectors = stored_vectors(client.get_collection(collection_name(team, embedder.name)))
            records = [await reader.get(team, CHANNEL, ts) for ts in expected]
            texts = {m.key: indexed_text(m) for m in records if m is not None}
            assert len(texts) == len(expected)
            assert vectors_are_of(vectors, texts, embedder)
        finally:
            if reader is not None:
                await reader.close()
            await engine.dispose()


async def test_an_edit_that_overtook_its_message_survives_a_sigkill(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    """Slack delivers an edit before the message it edits (one process, embedded stores): the
    edit finds nothing to apply yet and is finished before the message arrives, the message
    waits for the held store, and the process is killed. After the restart the message is
    archived from the intake with the edit applied: the early edit was kept in the SQL store,
    not in memory."""
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    token = secrets.token_hex(16)
    env = serve_env(emulator, fake_llm, data, REDIS_URL="", LORE_METRICS_TOKEN=token)
    url = f"http://127.0.0.1:{env['PORT']}"
    ts, edited_at = emulator.workspace.clock.next(), emulator.workspace.clock.next()
    message = {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "U0BOB",
        "text": "the offsite is in Porto",
        "ts": ts,
        "event_ts": ts,
    }

    async with serving(env) as process:
        emulator.config.events_url = f"{url}/slack/events"
        await emulator.post_message("U0ALICE", CHANNEL, "standing note")
        await eventually(lambda: _holds(data, team, channel_texts(emulator)), within=60)
        with held(chroma_worker_of(process.pid)):  # the message's archive write waits
            edit = edited_event(ts, "the offsite is in Lisbon", edited_at)
            assert await emulator.deliver_event(edit) == 200

            async def pending(count: int) -> bool:
                return await metric_at(url, token, "lore_intake_pending") == count

            await eventually(lambda: pending(0), within=60)  # the edit is finished: no message
            # in Slack (the next process looks it up there), delivered after its edit
            await emulator.post_message("U0BOB", CHANNEL, message["text"], ts=ts, deliver=False)
            assert await emulator.deliver_event(message) == 200
            await eventually(lambda: pending(1), within=60)  # the message waits for the store
            assert ts not in lexical_rows(data, team, CHANNEL)
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    restarted = {**env, "PORT": str(free_port())}
    async with serving(restarted) as process:

        async def edited() -> bool:
            return lexical_rows(data, team, CHANNEL).get(ts) == "the offsite is in Lisbon"

        await eventually(edited, within=90)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
