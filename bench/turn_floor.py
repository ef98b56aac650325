"""The floor under bench/turn_overhead.py: a turn's unavoidable work done through Lore's chosen
parts alone, without Lore's code (what `turn_overhead.py --app floor` runs instead of Lore).

A Bolt AsyncApp (every built-in middleware on) answers each `app_mention`, and each later message
of a thread it answered, the way a turn of Lore must at least: the thread's status
(assistant.threads.setStatus); the request Lore sends (its system prompt and tools, the question
with a cache breakpoint) streamed through the Anthropic SDK; for the model's
`search_conversations`, the query embedded (onnxruntime, int8, the model runner Lore uses),
the nearest 8 messages from Chroma and their text from SQL, sent back as `search_result`
blocks; the answer streamed to Slack with chat.startStream/appendStream/stopStream. Every
message (questions and answers) is archived in batches every 0.25 s: embedded in one run,
upserted into Chroma (in this process, through a thread) and inserted into SQLite through
SQLAlchemy's async engine. It leaves out what Lore adds: the intake that keeps what Slack was
told received, de-duplication, the access rule and its look-ups, memory blocks and notes, the
lexical index, thread history, summaries, the quieting of mentions, citations and metrics.
Read its CPU, not its latency: Chroma runs in this process, where a write holds the GIL and
stalls the event loop (the reason Lore gives Chroma a worker process of its own).

    SLACK_BOT_TOKEN=… SLACK_SIGNING_SECRET=… SLACK_API_URL=… ANTHROPIC_BASE_URL=… PORT=…
    LORE_DATA_DIR=… LORE_EMBEDDING_MODEL_DIR=… python bench/turn_floor.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anthropic
import chromadb
from aiohttp import web
from chromadb.config import Settings
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Column, MetaData, String, Table, Text, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.agent.prompt import CACHED, IDENTITY
from app.agent.tools import TOOLS
from memory.embeddings import Embedder, load_embedder

LINGER = 0.25
HITS = 8
WORKSPACE = "https://example.slack.com"
METADATA = MetaData()
THREADS = Table(
    "threads",
    METADATA,
    Column("channel", String, primary_key=True),
    Column("ts", String, primary_key=True),
)
MESSAGES = Table(
    "messages",
    METADATA,
    Column("channel", String, primary_key=True),
    Column("ts", String, primary_key=True),
    Column("text", Text),
)
_ANSWERED = select(THREADS.c.ts).where(
    THREADS.c.channel == bindparam("channel"), THREADS.c.ts == bindparam("ts")
)
_TEXTS = select(MESSAGES.c.channel, MESSAGES.c.ts, MESSAGES.c.text).where(
    MESSAGES.c.channel.in_(bindparam("channels", expanding=True)),
    MESSAGES.c.ts.in_(bindparam("tss", expanding=True)),
)
_ADD_THREAD = insert(THREADS).prefix_with("OR IGNORE")
_ADD_MESSAGES = insert(MESSAGES).prefix_with("OR REPLACE")


class Archive:
    """Messages embedded, in Chroma and in SQL, written in batches."""

    def __init__(self, engine: AsyncEngine, embedder: Embedder, data: Path) -> None:
        self._engine = engine
        self._embedder = embedder
        client = chromadb.PersistentClient(
            str(data / "chroma"), Settings(anonymized_telemetry=False)
        )
        self._vectors = client.get_or_create_collection(
            "messages", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        self._pending: list[dict[str, str]] = []
        self._flushing: asyncio.Task[None] | None = None

    def add(self, channel: str, ts: str, text: str) -> None:
        self._pending.append({"channel": channel, "ts": ts, "text": text})
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(LINGER)
            batch, self._pending = self._pending, []
            vectors = await asyncio.to_thread(self._embedder.embed, [m["text"] for m in batch])
            await asyncio.to_thread(
                self._vectors.upsert,
                ids=[f"{m['channel']}:{m['ts']}" for m in batch],
                embeddings=vectors,  # type: ignore[arg-type]
                metadatas=[{"channel": m["channel"]} for m in batch],
            )
            async with self._engine.begin() as connection:
                await connection.execute(_ADD_MESSAGES, batch)

    async def search(self, query: str) -> list[dict[str, Any]]:
        """The nearest messages to query as `search_result` blocks."""
        vector = (await asyncio.to_thread(self._embedder.embed, [query]))[0]
        found = await asyncio.to_thread(
            self._vectors.query,
            query_embeddings=[vector],  # type: ignore[arg-type]
            n_results=HITS,
        )
        keys = [i.split(":", 1) for i in found["ids"][0]]
        if not keys:
            return []
        params = {"channels": [c for c, _ in keys], "tss": [t for _, t in keys]}
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_TEXTS, params)).all()
        return [
            {
                "type": "search_result",
                "source": f"{WORKSPACE}/archives/{row.channel}/p{row.ts.replace('.', '')}",
                "title": f"someone in <#{row.channel}>",
                "content": [{"type": "text", "text": row.text or "(empty message)"}],
                "citations": {"enabled": True},
            }
            for row in rows
        ]


class Floor:
    """Answers a question with the least a turn of Lore does."""

    def __init__(
        self,
        client: AsyncWebClient,
        llm: anthropic.AsyncAnthropic,
        engine: AsyncEngine,
        archive: Archive,
    ) -> None:
        self._client = client
        self._llm = llm
        self._engine = engine
        self._archive = archive

    async def answered_here(self, channel: str, thread_ts: str) -> bool:
        async with self._engine.connect() as connection:
            found = await connection.execute(_ANSWERED, {"channel": channel, "ts": thread_ts})
            return found.first() is not None

    async def answer(self, team: str, channel: str, thread_ts: str, user: str, text: str) -> None:
        await self._client.assistant_threads_setStatus(
            channel_id=channel, thread_ts=thread_ts, status="is thinking…"
        )
        system = [
            {"type": "text", "text": IDENTITY, "cache_control": CACHED},
            {
                "type": "text",
                "text": "Your memory blocks as of this turn:\n<memory>\n\n</memory>",
                "cache_control": CACHED,
            },
        ]
        question = {
            "type": "text",
            "text": f"[<@{user}> asks you]\n{text}",
            "cache_control": CACHED,
        }
        messages: list[dict[str, Any]] = [{"role": "user", "content": [question]}]
        stream = await self._client.chat_stream(
            channel=channel,
            thread_ts=thread_ts,
            recipient_team_id=team,
            recipient_user_id=user,
            buffer_size=120,
        )
        answer = ""
        for _ in range(2):
            async with self._llm.messages.stream(
                model="claude-sonnet-4-5",
                max_tokens=1024,
                system=system,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
                tools=TOOLS,  # type: ignore[arg-type]
            ) as model:
                async for piece in model.text_stream:
                    answer += piece
                    await stream.append(markdown_text=piece)
                message = await model.get_final_message()
            uses = [block for block in message.content if block.type == "tool_use"]
            if message.stop_reason != "tool_use" or not uses:
                break
            use = uses[0]
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}
                    ],
                }
            )
            query = str(dict(use.input).get("query", ""))
            results = await self._archive.search(query)
            messages.append(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": results}],
                }
            )
        await stream.stop()
        async with self._engine.begin() as connection:
            await connection.execute(_ADD_THREAD, {"channel": channel, "ts": thread_ts})
        if stream.ts:
            self._archive.add(channel, stream.ts, answer)


def build(data: Path) -> tuple[AsyncApp, AsyncEngine, anthropic.AsyncAnthropic]:
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )
    app = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])
    engine = create_async_engine(f"sqlite+aiosqlite:///{data / 'floor.db'}")
    embedder = load_embedder(
        Path(os.environ["LORE_EMBEDDING_MODEL_DIR"]), data / "models", precision="int8", threads=1
    )
    llm = anthropic.AsyncAnthropic(
        api_key="bench-key",
        base_url=os.environ["ANTHROPIC_BASE_URL"],
        http_client=anthropic.DefaultAioHttpClient(),
    )
    archive = Archive(engine, embedder, data)
    floor = Floor(client, llm, engine, archive)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        thread_ts = event.get("thread_ts") or event["ts"]
        await floor.answer(
            body["team_id"], event["channel"], thread_ts, event["user"], event["text"]
        )

    @app.event("message")
    async def on_message(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        if event.get("subtype") or "text" not in event:
            return
        archive.add(event["channel"], event["ts"], event["text"])
        thread_ts = event.get("thread_ts")
        mentioned = f"<@{context.bot_user_id}>" in event["text"]
        if thread_ts and not mentioned and await floor.answered_here(event["channel"], thread_ts):
            await floor.answer(
                body["team_id"], event["channel"], thread_ts, event["user"], event["text"]
            )

    return app, engine, llm


async def serve() -> None:
    data = Path(os.environ["LORE_DATA_DIR"])
    await asyncio.to_thread(data.mkdir, parents=True, exist_ok=True)
    app, engine, llm = build(data)
    async with engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    server = app.server(port=int(os.environ["PORT"]), path="/slack/events", host="127.0.0.1")
    runner = web.AppRunner(server.web_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await llm.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(serve())
