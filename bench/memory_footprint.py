"""Memory footprint: resident memory of one `python -m app serve` with 100,000 archived messages.

Setup (not measured): 100,000 synthetic messages of the emulator's workspace (bench/corpus.py)
are written into a data dir through `Archive.add` with precomputed vectors (each message's
vector is the mean of its clauses' embeddings, so only the clauses go through the model), into
the embedded stores `serve` uses by default (SQLite and Chroma under LORE_DATA_DIR). `--data DIR`
keeps the dir and reuses it on the next run.

Then, one at a time, against one Slack emulator: a bare Bolt app (bench/bare_bolt.py), an
empty Lore (a fresh data dir) and Lore on the 100,000 messages. Each one's VmRSS (from
/proc/<pid>/status) is read once it is ready and again after a few searches (Lore: through its
JSON API, `/api/teams/T/search`, which loads the vector index). Printed: the main process alone
and with its child processes (Lore's embedded Chroma runs in a worker process), and the ratios.

    .venv/bin/python bench/memory_footprint.py [--messages 100000] [--searches 20] [--data DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ack_latency import free_port, machine_idle, serve_env, wait_healthy
from bench.corpus import clause_vectors, make_corpus
from bench.procstat import tree_rss_kib
from emulator import EmulatorConfig, SlackEmulator
from memory.archive import Archive
from memory.db import make_engine
from memory.embeddings import OnnxEmbedder

MODEL_DIR = ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
TEAM = EmulatorConfig().team_id
STEP = 5000
QUERIES = [
    "who is on call for the checkout api this week",
    "latency spike after the deploy",
    "postmortem root cause deadlock",
    "Acme wants the SLA in writing before renewal",
    "runbook for certificate expiry",
    "what did we decide about the offsite",
    "rate limiting on the gateway",
    "memory leak in the search indexer",
    "budget for next quarter rewrite",
    "feature flags rollout plan",
]


@dataclass(frozen=True)
class Footprint:
    """RSS in KiB: main process and with children, when ready and after the searches."""

    ready: tuple[int, int]
    searched: tuple[int, int]


async def build_archive(data: Path, messages: int, clauses: int) -> None:
    """Write `messages` synthetic messages into data's embedded stores (kept if already there)."""
    await asyncio.to_thread(data.mkdir, parents=True, exist_ok=True)
    embedder = OnnxEmbedder(MODEL_DIR)
    engine = make_engine(f"sqlite+aiosqlite:///{data / 'lore.db'}")
    archive = await Archive.open_embedded(data / "chroma", embedder, engine)
    try:
        if await archive.count(TEAM) == messages:
            print(f"reusing {messages} archived messages in {data}", flush=True)
            return
        await archive.delete_team(TEAM)
        started = time.perf_counter()
        corpus = make_corpus(messages, team_id=TEAM, clauses=clauses)
        vectors = await asyncio.to_thread(clause_vectors, embedder, corpus)
        for start in range(0, messages, STEP):
            stop = min(start + STEP, messages)
            await archive.add(
                corpus.messages[start:stop], vectors=corpus.vectors(vectors, start, stop)
            )
        stored = await archive.count(TEAM)
        if stored != messages:
            raise RuntimeError(f"archived {stored} of {messages} messages")
        print(
            f"setup: {messages} messages archived in {data} "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    finally:
        await archive.close()
        await engine.dispose()


async def search(port: int, token: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}/api/teams/{TEAM}/search"
    async with aiohttp.ClientSession(headers=headers) as session:
        for n in range(count):
            async with session.get(url, params={"q": QUERIES[n % len(QUERIES)]}) as response:
                body = await response.json()
                if response.status != 200 or not body.get("ok"):
                    raise RuntimeError(f"search answered {response.status}: {body}")


async def footprint(
    command: list[str], env: dict[str, str], lore: bool, searches: int, token: str
) -> Footprint:
    """Start one server, read its RSS when ready and after the searches, stop it."""
    port = free_port()
    process = subprocess.Popen(command, cwd=ROOT, env={**env, "PORT": str(port)})
    try:
        await wait_healthy(
            f"http://127.0.0.1:{port}/{'readyz' if lore else 'slack/events'}", process
        )
        await machine_idle()
        ready = tree_rss_kib(process.pid)
        if lore:
            await search(port, token, searches)
        await machine_idle()
        return Footprint(ready, tree_rss_kib(process.pid))
    finally:
        process.terminate()
        process.wait(timeout=60)


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


async def measure(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="lore-footprint-"))
    data = args.data or work / "full"
    await build_archive(data, args.messages, args.clauses)
    emulator = SlackEmulator(EmulatorConfig(events_url=None))
    await emulator.start()
    token = secrets.token_urlsafe(32)
    env = serve_env(emulator, LORE_ADMIN_TOKEN=token)
    for name in ("DATABASE_URL", "REDIS_URL", "CHROMA_URL"):
        env.pop(name, None)
    lore = [sys.executable, "-m", "app", "serve"]
    servers = {
        "bare Bolt": ([sys.executable, str(ROOT / "bench" / "bare_bolt.py")], {}),
        "empty Lore": (lore, {"LORE_DATA_DIR": str(work / "empty")}),
        f"Lore, {args.messages} messages": (lore, {"LORE_DATA_DIR": str(data)}),
    }
    results: dict[str, Footprint] = {}
    try:
        for name, (command, extra) in servers.items():
            is_lore = command is lore
            results[name] = await footprint(
                command, {**env, **extra}, is_lore, args.searches, token
            )
            ready, searched = results[name].ready[1], results[name].searched[1]
            print(f"{name}: {mib(ready)} MiB ready, {mib(searched)} MiB searched", flush=True)
    finally:
        await emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"VmRSS in MiB; after {args.searches} searches through /api (Lore only)")
    print(
        "| server | ready: main | ready: with children | searched: main | searched: with children |"
    )
    print("|---|---|---|---|---|")
    for name, result in results.items():
        print(
            f"| {name} | {mib(result.ready[0])} | {mib(result.ready[1])} "
            f"| {mib(result.searched[0])} | {mib(result.searched[1])} |"
        )
    full = list(results.values())[-1].searched
    for base in ("bare Bolt", "empty Lore"):
        main, total = results[base].searched
        print(
            f"ratio Lore with {args.messages} messages / {base}: main {full[0] / main:.2f}x, "
            f"with children {full[1] / total:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--clauses", type=int, default=3000, help="distinct clauses embedded")
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--data", type=Path, default=None, help="data dir to keep and reuse")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
