"""Memory contention: P processes x N conversations each insert one line into ONE memory block.

Lore's edit path (`MemoryBlocks.edit` with `Insert`: the workspace's Redis lock, re-read under it,
write version n+1 only if n is still the newest, on PostgreSQL) runs beside a naive
last-write-wins version over the same PostgreSQL (read the block, append the line with the same
edit rule, write it back: no lock, no version check; how DESIGN.md describes Letta's edits).
Every conversation is a coroutine, all started at once in every process. Counts the lines
present at the end: Lore must lose none; prints how many the naive one loses.

    .venv/bin/python bench/memory_contention.py [--processes 2] [--conversations 100]
        [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
        [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.blocks import MemoryBlocks, MemoryScope
from memory.db import create_tables, make_engine
from memory.edits import Insert, apply_edit
from memory.locks import RedisLocks

EVERYTHING = MemoryScope.everything()

LABEL = "org"
NAIVE_TABLE = "bench_naive_blocks"
LINE_CHARS = 32  # room per line in the block's character limit


@dataclass(frozen=True)
class Outcome:
    """What one process reported: edits that returned success, edits that raised, seconds."""

    ok: list[str]
    failed: int
    seconds: float


def line_of(process: int, conversation: int) -> str:
    return f"fact p{process}-c{conversation:04d}"


def char_limit(args: argparse.Namespace) -> int:
    return max(5000, LINE_CHARS * args.processes * args.conversations)


class LoreEditor:
    """Lore's path: MemoryBlocks.edit under RedisLocks, compare-and-set on the version."""

    def __init__(self, engine: AsyncEngine, redis: Redis, limit: int) -> None:
        self._blocks = MemoryBlocks(engine, RedisLocks(redis), limit)

    async def prepare(self, team: str) -> None:
        await self._blocks.current(team, EVERYTHING)

    async def insert(self, team: str, line: str, conversation_id: str) -> None:
        await self._blocks.edit(
            team, LABEL, Insert(line), conversation_id=conversation_id, scope=EVERYTHING
        )

    async def lines(self, team: str) -> list[str]:
        block = await self._blocks.get(team, LABEL, EVERYTHING)
        return block.value.splitlines() if block else []

    async def cleanup(self, team: str) -> None:
        await self._blocks.delete_team(team)


class NaiveEditor:
    """Last write wins: read the block, apply the edit, write the whole value back."""

    def __init__(self, engine: AsyncEngine, limit: int) -> None:
        self._engine = engine
        self._limit = limit

    async def prepare(self, team: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} (team_id VARCHAR(64), "
                    "label VARCHAR(128), value TEXT, PRIMARY KEY (team_id, label))"
                )
            )
            await connection.execute(
                text(
                    f"INSERT INTO {NAIVE_TABLE} VALUES (:team, :label, '') "
                    "ON CONFLICT (team_id, label) DO NOTHING"
                ),
                {"team": team, "label": LABEL},
            )

    async def insert(self, team: str, line: str, conversation_id: str) -> None:
        del conversation_id
        value = await self._read(team)
        new_value = apply_edit(value, Insert(line), self._limit)
        async with self._engine.begin() as connection:
            await connection.execute(
                text(
                    f"UPDATE {NAIVE_TABLE} SET value = :value "
                    "WHERE team_id = :team AND label = :label"
                ),
                {"value": new_value, "team": team, "label": LABEL},
            )

    async def lines(self, team: str) -> list[str]:
        return (await self._read(team)).splitlines()

    async def cleanup(self, team: str) -> None:
        """Delete this run's row, and the table once no run uses it."""
        async with self._engine.begin() as connection:
            await connection.execute(
                text(f"DELETE FROM {NAIVE_TABLE} WHERE team_id = :team"), {"team": team}
            )
            if not await connection.scalar(text(f"SELECT count(*) FROM {NAIVE_TABLE}")):
                await connection.execute(text(f"DROP TABLE {NAIVE_TABLE}"))

    async def _read(self, team: str) -> str:
        async with self._engine.connect() as connection:
            value = await connection.scalar(
                text(f"SELECT value FROM {NAIVE_TABLE} WHERE team_id = :team AND label = :label"),
                {"team": team, "label": LABEL},
            )
        return str(value or "")


Editor = LoreEditor | NaiveEditor


async def open_editor(
    variant: str, args: argparse.Namespace
) -> tuple[Editor, AsyncEngine, Redis | None]:
    engine = make_engine(args.database_url)
    if variant == "naive":
        return NaiveEditor(engine, char_limit(args)), engine, None
    await create_tables(engine)
    redis = Redis.from_url(args.redis_url)
    return LoreEditor(engine, redis, char_limit(args)), engine, redis


async def worker(args: argparse.Namespace) -> None:
    """One process: prepare, say "ready", wait for "go" on stdin, make every edit at once."""
    editor, engine, redis = await open_editor(args.worker, args)
    await editor.prepare(args.team)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    lines = [line_of(args.index, j) for j in range(args.conversations)]
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            editor.insert(args.team, line, f"bench-p{args.index}-c{j}")
            for j, line in enumerate(lines)
        ),
        return_exceptions=True,
    )
    seconds = time.perf_counter() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors[:3]:
        print(f"edit failed: {error!r}", file=sys.stderr)
    ok = [line for line, r in zip(lines, results, strict=True) if r is None]
    print(json.dumps({"ok": ok, "failed": len(errors), "seconds": seconds}), flush=True)
    await engine.dispose()
    if redis is not None:
        await redis.aclose()


async def run_variant(variant: str, team: str, args: argparse.Namespace) -> list[Outcome]:
    """Start the worker processes, release them together, collect what each reported."""
    command = [
        sys.executable,
        str(SCRIPT),
        f"--worker={variant}",
        f"--team={team}",
        f"--conversations={args.conversations}",
        f"--processes={args.processes}",
        f"--database-url={args.database_url}",
        f"--redis-url={args.redis_url}",
    ]
    processes = [
        await asyncio.create_subprocess_exec(
            *command,
            f"--index={i}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(args.processes)
    ]
    outcomes: list[Outcome] = []
    finished = False
    try:
        for process in processes:
            assert process.stdout is not None
            if (await process.stdout.readline()).strip() != b"ready":
                raise RuntimeError(f"a {variant} worker did not start")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        for process in processes:
            assert process.stdout is not None
            report = json.loads(await process.stdout.readline())
            outcomes.append(Outcome(report["ok"], report["failed"], report["seconds"]))
        finished = True
    finally:
        for process in processes:
            if not finished and process.returncode is None:
                process.kill()
            await process.wait()
    return outcomes


async def measure(args: argparse.Namespace) -> None:
    team = f"TBENCH{uuid.uuid4().hex[:10].upper()}"
    total = args.processes * args.conversations
    print(
        f"{args.processes} processes x {args.conversations} conversations = {total} inserts "
        f"into one block; PostgreSQL {args.database_url.split('@')[-1]}"
    )
    rows: dict[str, tuple[int, int, int, float]] = {}
    for variant in ("Lore", "naive"):
        editor, engine, redis = await open_editor(variant.lower(), args)
        await editor.prepare(team)
        try:
            outcomes = await run_variant(variant.lower(), team, args)
            present = set(await editor.lines(team))
        finally:
            await editor.cleanup(team)
            await engine.dispose()
            if redis is not None:
                await redis.aclose()
        reported = [line for o in outcomes for line in o.ok]
        failed = sum(o.failed for o in outcomes)
        lost = sum(1 for line in reported if line not in present)
        seconds = max(o.seconds for o in outcomes)
        rows[variant] = (len(reported), failed, lost, seconds)
        print(
            f"{variant:6s} edits reported done {len(reported)}, failed {failed}, "
            f"lost {lost} (lines present {len(present & set(reported))}/{total}), "
            f"{seconds:.2f} s",
            flush=True,
        )
    print()
    print("| version | done | failed (reported) | lost | seconds |")
    print("|---|---|---|---|---|")
    for variant, (done, failed, lost, seconds) in rows.items():
        print(f"| {variant} | {done} | {failed} | {lost} | {seconds:.2f} |")
    lore_lost, naive_lost = rows["Lore"][2], rows["naive"][2]
    print(
        f"lost edits: Lore {lore_lost} (goal 0: {'met' if lore_lost == 0 else 'NOT met'}), "
        f"naive last-write-wins {naive_lost} of {rows['naive'][0]} "
        f"({100 * naive_lost / max(1, rows['naive'][0]):.0f}%)"
    )
    print(f"time ratio Lore / naive = {rows['Lore'][3] / max(1e-9, rows['naive'][3]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=100, help="per process")
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--worker", choices=("lore", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--team", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(worker(args) if args.worker else measure(args))


if __name__ == "__main__":
    main()
