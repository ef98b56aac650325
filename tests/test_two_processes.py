"""Two Lore processes sharing Redis, PostgreSQL and a Chroma server behind one event stream
that delivers each event to one of them or to both, at random."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import sys
from pathlib import Path
from typing import Any

from emulator import SlackEmulator
from memory.archive import Archive, collection_name, message_key
from memory.blocks import MemoryBlocks, MemoryScope
from memory.chroma_client import open_http
from memory.embeddings import OnnxEmbedder
from memory.locks import LocalLocks
from tests.conftest import (
    POSTGRES_URL,
    ROOT,
    postgres_engine_or_skip,
)
from tests.event_splitter import EventSplitter
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import eventually, serve_env, settled_processes, user_text, wait_ready

EVERYTHING = MemoryScope.everything()

BOT = "<@U0LORE>"
CHANNEL = "C0GENERAL"
MENTIONS = 40
METRICS_TOKEN = secrets.token_hex(16)  # 32 characters, the least Lore accepts


async def start_lore(
    n: int, emulator: SlackEmulator, fake_llm: FakeAnthropic, chroma_url: str, data: Path
) -> tuple[str, asyncio.subprocess.Process]:
    """`python -m app serve` on the shared stores; its URL and process."""
    env = serve_env(
        emulator,
        fake_llm,
        data / f"lore{n}",
        DATABASE_URL=POSTGRES_URL,
        CHROMA_URL=chroma_url,
        LORE_METRICS_TOKEN=METRICS_TOKEN,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT, env=env
    )
    return f"http://127.0.0.1:{env['PORT']}", process


def channel_messages(emulator: SlackEmulator) -> dict[str, dict[str, Any]]:
    """Every message of the channel, thread replies included, by ts."""
    found: dict[str, dict[str, Any]] = {}
    for top in emulator.messages(CHANNEL):
        for message in emulator.thread(CHANNEL, top["ts"]):
            found[message["ts"]] = message
    return found


async def test_two_processes_answer_once_lose_no_edit_and_archive_everything_once(
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    chroma_server: str,
    lore_embedder: OnnxEmbedder,
    tmp_path: Path,
) -> None:
    engine = await postgres_engine_or_skip()
    emulator = team_emulator
    team = emulator.config.team_id

    def respond(request: dict[str, Any]) -> Any:
        last = request["messages"][-1]["content"]
        if isinstance(last, list) and last[0].get("type") == "tool_result":
            return reply(text("Saved."))
        number = re.search(r"fact number (\d+)", user_text(request))
        if number is None:
            return reply(text("I was not asked."))  # fails the reply checks below
        return reply(tool_use("memory_insert", {"label": "org", "text": f"Fact {number[1]}"}))

    fake_llm.respond_with(respond)
    processes: list[asyncio.subprocess.Process] = []
    splitter: EventSplitter | None = None
    reader: Archive | None = None
    try:
        urls = []
        for n in range(2):
            url, process = await start_lore(n, emulator, fake_llm, chroma_server, tmp_path)
            urls.append(url)
            processes.append(process)
        for url, process in zip(urls, processes, strict=True):
            await wait_ready(url, process)
        splitter = EventSplitter(urls, random.Random(7))
        await splitter.start()
        emulator.config.events_url = splitter.url

        chooser = random.Random(11)
        mentions, plain = [], []
        for n in range(MENTIONS):
            mentions.append(
                await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} learn fact number {n}")
            )
            if n % 2 == 0:
                plain.append(
                    await emulator.post_message("U0BOB", CHANNEL, f"status: deploy {n} went fine")
                )
            else:
                parent = chooser.choice(plain)["ts"]
                await emulator.post_message("U0CAROL", CHANNEL, f"thanks ({n})", thread_ts=parent)
            if n % 5 == 0:  # edited at once: the edit may reach the other process first
                draft = await emulator.post_message("U0BOB", CHANNEL, f"draft {n}: ship Monday")
                await emulator.edit_message(CHANNEL, draft["ts"], f"edited {n}: ship Tuesday")
            elif n % 5 == 1:  # deleted at once, likewise
                oops = await emulator.post_message("U0BOB", CHANNEL, f"oops {n}: door code 4411")
                await emulator.delete_message(CHANNEL, oops["ts"])

        for posted in mentions:
            await emulator.wait_for_reply(CHANNEL, posted["ts"], timeout=120)
        await emulator.drain()  # every event delivered, the bot's own messages' included
        expected = channel_messages(emulator)
        reader = await Archive.open_http(chroma_server, lore_embedder, engine)

        async def archived_all() -> bool:
            assert reader is not None
            return await reader.count(team) == len(expected)

        await eventually(archived_all, 60)
        # both processes idle and no event under way: a duplicate turn or write would show now
        await settled_processes(emulator, urls, METRICS_TOKEN)

        # every mention answered exactly once, and nothing else answered
        for posted in mentions:
            bots = [m for m in emulator.thread(CHANNEL, posted["ts"]) if m.get("bot_id")]
            assert [m["text"] for m in bots] == ["Saved."], posted["ts"]
        for posted in plain:
            assert not [m for m in emulator.thread(CHANNEL, posted["ts"]) if m.get("bot_id")]
        assert len(fake_llm.requests) == 2 * MENTIONS  # one tool call and one answer per turn

        # no memory edit lost
        history = await MemoryBlocks(engine, LocalLocks()).history(team, "org", EVERYTHING)
        assert [b.version for b in history] == list(range(1, MENTIONS + 2))
        facts = sorted(f"Fact {n}" for n in range(MENTIONS))
        assert sorted(history[-1].value.splitlines()) == facts

        # the archive holds every message once, as edited and without the deleted ones, read
        # back by a third client: the record (SQL) and the vectors (the Chroma server) alike
        assert await reader.count(team) == len(expected)
        for ts, message in expected.items():
            stored = await reader.get(team, CHANNEL, ts)
            assert stored is not None, ts
            assert stored.text == message["text"], ts
        store = await open_http(chroma_server)
        try:
            vectors = await store.collection(
                collection_name(team, lore_embedder.name), create=False
            )
            assert vectors is not None
            assert await vectors.count() == len(expected)
            keys = [message_key(CHANNEL, ts) for ts in expected]
            assert {r.id for r in await vectors.get(keys)} == set(keys)
        finally:
            await store.close()

        # the stream really was split: events went to each process alone and to both
        assert splitter.sent[(0,)] and splitter.sent[(1,)] and splitter.sent[(0, 1)]
    finally:
        if splitter is not None:
            await splitter.stop()
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), timeout=60)
        if reader is not None:
            await reader.close()
        await engine.dispose()
