"""Stores come and go: Lore keeps running, reports what it lacks on /readyz, and once a store is
back it stores everything it acknowledged meanwhile, once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import chromadb
from chromadb.config import Settings as ChromaSettings

from emulator import SlackEmulator
from memory.archive import collection_name, message_key
from memory.embeddings import MODEL_NAME
from tests.fake_anthropic import FakeAnthropic
from tests.harness import eventually, serve_env
from tests.processes import chroma_worker_of, held, lexical_rows, serving

CHANNEL = "C0GENERAL"


def channel_texts(emulator: SlackEmulator) -> dict[str, str]:
    """ts -> text of every message in the channel now."""
    return {m["ts"]: m["text"] for m in emulator.messages(CHANNEL)}


def vectors(data_dir: Path, team: str) -> dict[str, str]:
    """Record id -> document in the embedded Chroma of a stopped Lore."""
    client = chromadb.PersistentClient(
        str(data_dir / "chroma"), ChromaSettings(anonymized_telemetry=False)
    )
    found = client.get_collection(collection_name(team, MODEL_NAME)).get(include=["documents"])
    return dict(zip(found["ids"], found["documents"] or [], strict=True))


async def test_a_killed_chroma_worker_is_replaced_and_what_it_held_is_stored(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    env = serve_env(emulator, fake_llm, data, REDIS_URL="")

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
            assert lexical_rows(data, team, CHANNEL) == stored_before
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
    assert vectors(data, team) == {message_key(CHANNEL, ts): t for ts, t in expected.items()}
