"""CPU per SQL statement on Lore's SQLite engine, by driver and pool shape, statements at once.

Runs `Conversations.find` (a turn's first lookup: one Core SELECT through SQLAlchemy's async
engine) `--statements` times in bursts of `--concurrency` at once, for each driver (aiosqlite's
own connections, or Lore's `memory.sqlite_driver`, one thread hop a statement) and pool shape
(connections kept, overflow allowed past them), alternating them `--rounds` times; prints the
process's CPU milliseconds per statement (the event loop and the connections' threads) and the
connections each opened. Beside it, the same SELECT through a synchronous
SQLAlchemy connection, the floor of what a statement costs without the async hops.

    .venv/bin/python bench/sqlite_pool.py [--concurrency 50] [--statements 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory.conversations import CONVERSATIONS, Conversations
from memory.db import SQLITE_POOL, _sqlite_pragmas, create_tables
from memory.sqlite_driver import connector

Shape = tuple[str, int, int]
SHAPES: list[Shape] = [
    ("aiosqlite", SQLITE_POOL, SQLITE_POOL),
    ("aiosqlite", SQLITE_POOL, 0),
    ("one hop", SQLITE_POOL, 0),
    ("one hop", 4, 0),
]
THREADS = 50


async def burst_cost(
    url: str, shape: Shape, concurrency: int, statements: int
) -> tuple[float, int]:
    """CPU ms per statement and connections opened, for one driver and pool shape."""
    driver, pool_size, overflow = shape
    own = {"async_creator": connector(url)} if driver == "one hop" else {}
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=overflow, **own)
    opened = [0]

    def count(connection: object, record: object) -> None:
        opened[0] += 1

    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine, "connect", count)
    conversations = Conversations(engine)
    threads = [f"{n}.000100" for n in range(THREADS)]
    try:
        await asyncio.gather(*(conversations.find("T1", "C1", t) for t in threads))  # warm
        opened[0] = 0
        started = time.process_time()
        for done in range(0, statements, concurrency):
            batch = min(concurrency, statements - done)
            await asyncio.gather(
                *(conversations.find("T1", "C1", threads[n % THREADS]) for n in range(batch))
            )
        return (time.process_time() - started) / statements * 1000, opened[0]
    finally:
        await engine.dispose()


def sync_cost(path: Path, statements: int) -> float:
    engine = create_engine(f"sqlite:///{path}")
    query = select(CONVERSATIONS).where(
        CONVERSATIONS.c.team_id == "T1",
        CONVERSATIONS.c.channel_id == "C1",
        CONVERSATIONS.c.thread_ts == "7.000100",
    )
    with engine.connect() as connection:
        started = time.process_time()
        for _ in range(statements):
            connection.execute(query).first()
        cost = (time.process_time() - started) / statements * 1000
    engine.dispose()
    return cost


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="lore-sqlite-pool-")) / "lore.db"
    url = f"sqlite+aiosqlite:///{path}"
    setup = create_async_engine(url)
    await create_tables(setup)
    conversations = Conversations(setup)
    for n in range(THREADS):
        await conversations.open("T1", "C1", f"{n}.000100")
    await setup.dispose()
    costs: dict[Shape, list[float]] = {shape: [] for shape in SHAPES}
    opened: dict[Shape, list[int]] = {shape: [] for shape in SHAPES}
    for _ in range(args.rounds):
        for shape in SHAPES:
            cost, count = await burst_cost(url, shape, args.concurrency, args.statements)
            costs[shape].append(cost)
            opened[shape].append(count)
    print(f"{args.concurrency} statements at once, {args.statements} per run, {args.rounds} runs")
    print(
        "| driver | pool kept + overflow | CPU ms per statement (median, runs) "
        "| connections opened |"
    )
    print("|---|---|---|---|")
    for shape in SHAPES:
        runs = ", ".join(f"{c:.3f}" for c in costs[shape])
        print(
            f"| {shape[0]} | {shape[1]} + {shape[2]} "
            f"| {statistics.median(costs[shape]):.3f} ({runs}) "
            f"| {statistics.median(opened[shape]):.0f} |"
        )
    print(
        f"| pysqlite, synchronous | one connection | {sync_cost(path, args.statements):.3f} | - |"
    )


if __name__ == "__main__":
    asyncio.run(main())
