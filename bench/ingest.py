"""Ingest rate: messages archived per second, embeddings included, Lore beside raw Chroma.

Both write the same synthetic Slack messages (bench/corpus.py) with the same embedder
(`load_embedder` on the model dir, LORE_EMBEDDING_THREADS' default) in the same run:
- Lore: every message handed to `app.ingest.Ingest` at once, as the message listener does;
  it archives them in batches of 64 through `Archive.add` (embedding on its low-priority
  write thread, the vectors to embedded Chroma in its worker process, the record and lexical
  index to SQLite, or with `--database-url` to PostgreSQL, in a schema of the run's own
  (`--schema`, created empty before each run and dropped after);
- raw Chroma: for each batch of 64, `embedder.embed` of the same texts, then `collection.add`
  on an in-process `PersistentClient` collection (cosine space, as Lore's:
  memory/chroma_worker.py).
The machine is let go idle before each run; with `--rounds 2` the order alternates. Prints both
rates and the ratio; goal: Lore >= 0.8x raw.

    .venv/bin/python bench/ingest.py [--messages 4000] [--rounds 1]
        [--database-url postgresql+asyncpg://... [--schema NAME]]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import chromadb
from chromadb.config import Settings as ChromaSettings

from app.ingest import BATCH, Ingest
from app.settings import Settings
from bench.ack_latency import load_average, machine_idle
from bench.corpus import make_corpus
from bench.database import bench_engine, create_schema, drop_schema
from memory.archive import Archive, collection_name, to_metadata
from memory.embeddings import Embedder, load_embedder
from memory.messages import ArchivedMessage, clean_text, indexed_text

MODEL_DIR = ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
TEAM = "TINGEST"


async def lore_rate(
    messages: list[ArchivedMessage],
    embedder: Embedder,
    work: Path,
    database_url: str | None = None,
    schema: str = "",
) -> float:
    """Messages per second through Ingest + Archive (embedded Chroma; SQLite in work, or
    PostgreSQL at database_url in a fresh schema)."""
    if database_url is None:
        engine = bench_engine(f"sqlite+aiosqlite:///{work / 'lore.db'}")
    else:
        engine = bench_engine(database_url, schema)
        await drop_schema(engine, schema)
        await create_schema(engine, schema)
    archive = await Archive.open_embedded(work / "chroma", embedder, engine)
    ingest = Ingest(archive, linger=Settings.model_fields["lore_ingest_linger"].default)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(ingest.add(m) for m in messages))
        seconds = time.perf_counter() - started
        stored = await archive.count(TEAM)
    finally:
        await archive.close()
        if database_url is not None:
            await drop_schema(engine, schema)
        await engine.dispose()
    if stored != len(messages):
        raise RuntimeError(f"Lore archived {stored} of {len(messages)} messages")
    return len(messages) / seconds


def raw_rate(messages: list[ArchivedMessage], embedder: Embedder, work: Path) -> float:
    """Messages per second through embedder.embed + collection.add, batches of the same size."""
    client = chromadb.PersistentClient(
        str(work / "raw"), ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection(
        collection_name(TEAM, embedder.name),
        configuration={"hnsw": {"space": "cosine"}},
        embedding_function=None,
    )
    cleaned = [replace(m, text=clean_text(m.text)) for m in messages]
    started = time.perf_counter()
    for start in range(0, len(cleaned), BATCH):
        batch = cleaned[start : start + BATCH]
        collection.add(
            ids=[m.key for m in batch],
            embeddings=embedder.embed([indexed_text(m) for m in batch]),  # type: ignore[arg-type]
            documents=[""] * len(batch),  # as Lore: the text lives in SQL only
            metadatas=[dict(to_metadata(m)) for m in batch],
        )
    seconds = time.perf_counter() - started
    stored = collection.count()
    if stored != len(messages):
        raise RuntimeError(f"raw Chroma holds {stored} of {len(messages)} messages")
    return len(messages) / seconds


async def measure(args: argparse.Namespace) -> None:
    corpus = make_corpus(args.messages, team_id=TEAM)
    messages = corpus.messages
    threads = Settings.model_fields["lore_embedding_threads"].default
    embedder = load_embedder(MODEL_DIR, MODEL_DIR.parent, threads=threads)
    embedder.embed(["warm up the model"])
    print(
        f"{len(messages)} messages (mean {statistics.mean(len(m.text) for m in messages):.0f} "
        f"chars), batches of {BATCH}, {embedder.name} with {threads} thread(s), "
        f"Lore's record in {'PostgreSQL' if args.database_url else 'SQLite'}",
        flush=True,
    )
    rates: dict[str, list[float]] = {"raw Chroma": [], "Lore": []}
    for round_number in range(args.rounds):
        order = ["raw Chroma", "Lore"] if round_number % 2 == 0 else ["Lore", "raw Chroma"]
        for name in order:
            work = Path(tempfile.mkdtemp(prefix="lore-ingest-"))
            try:
                await machine_idle()
                if name == "Lore":
                    rate = await lore_rate(messages, embedder, work, args.database_url, args.schema)
                else:
                    rate = await asyncio.to_thread(raw_rate, messages, embedder, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rates[name].append(rate)
            print(
                f"round {round_number + 1} {name:10s} {rate:7.1f} messages/s "
                f"(load average {load_average()})",
                flush=True,
            )
    print()
    print("| writer | messages/s |")
    print("|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.mean(values):.1f} |")
    ratio = statistics.mean(rates["Lore"]) / statistics.mean(rates["raw Chroma"])
    print(f"rate ratio Lore / raw Chroma = {ratio:.2f} (goal >= 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="PostgreSQL for Lore's record")
    parser.add_argument("--schema", default="lore_bench_ingest", help="with --database-url")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
