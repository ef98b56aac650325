"""Soak: two Lore processes under mixed traffic for `--minutes`, with a fault every minute.

Local only, bounded. The script starts everything it uses on free ports: a Redis of its own
(append-only file, so a restart keeps its data), a Chroma server (`chroma run`), a PostgreSQL
cluster (initdb/pg_ctl in a temp dir), the fake Messages API (bench/fake_model.py, in its own
process), the Slack emulator (in this process) and two `python -m app serve` processes in the
scale-out shape (all three stores shared), behind a load balancer that sends each Slack request
to one process at random and to the other when that one does not answer. Slack's retries of an
unacknowledged event come 1, 5 and 10 s apart (Slack: 1 s, 1 min, 5 min) so a run ends soon
after its load. Lore runs with its default retry settings.

`--threads` (default 200) people act at once, each in a loop until the time is up: ask Lore in a
new thread or follow up in a thread it answered (mention, a `search_conversations` step, then
the answer "Answer to TAG."), teach it (a `memory_insert` of the line "fact TAG" into `org`),
chat (post, reply in a thread, edit, delete), or run `/recall`. Every minute, half a minute in,
one fault in rotation: Redis stopped for 5 s and started again; the Chroma server likewise; the
second Lore process killed with SIGKILL and started again; the model answering 529 overloaded
to every request for 10 s; Slack answering 429 (Retry-After: 1) to every chat.* call for 10 s.
A fault's window lasts from its start until both processes answer /readyz again, plus 10 s.

At the end, once every event is delivered and both processes are idle, it counts:
- turns answered, answered with an apology, not answered, and answered more than once;
- acknowledged messages missing from the archive (goal 0): every human message whose `message`
  event a process acknowledged, not deleted by an acknowledged deletion, must be in the archive
  (its SQL record and its Chroma vector) with the text of its last acknowledged edit, and every
  acknowledged deletion must be gone;
- memory edits lost or doubled (goal 0): each `memory_insert` the model asked for inserts a
  line of its own; the newest `org` block must hold it once if the turn told the person it was
  saved, at most once otherwise;
- RSS of each Lore process (with its children) after start-up and at the end (the second
  process: since its last restart);
- turn overhead (latency - model time, see bench/turn_overhead.py) p50/p95 of questions
  answered outside the fault windows, beside those before the first fault and those inside.
Prints a table and writes `--out` (JSON).

    .venv/bin/python bench/soak.py [--minutes 10] [--threads 200] [--out bench/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ack_latency import embedder_name, free_port, serve_env
from bench.balancer import Balancer
from bench.procstat import tree_rss_kib
from bench.soak_checks import (
    ArchiveCheck,
    Key,
    MemoryCheck,
    acknowledged,
    check_archive,
    check_memory,
)
from bench.turn_overhead import (
    ASKERS,
    TOPICS,
    TimedEmulator,
    fetch_timings,
    model_times,
    start_fake,
)
from emulator import EmulatorConfig
from emulator.workspace import EmulatorError
from memory.archive import collection_name, message_key
from memory.blocks import MemoryBlocks, MemoryScope
from memory.chroma_client import open_http
from memory.lexical import messages as archive_table
from memory.locks import LocalLocks
from tests.harness import settled_processes
from tests.processes import ChromaServer, PostgresServer, RedisServer

FAULTS = ("redis restart", "chroma restart", "SIGKILL", "model 529", "slack 429")
STORE_DOWN = 5.0  # seconds a restarted store stays down
BURST = 10.0  # seconds of a 529 or 429 burst
GRACE = 10.0  # seconds a fault window lasts after recovery
SLACK_LIMITED = (
    "chat.postMessage",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "chat.update",
)
APOLOGY = "Sorry"
ADOPTION_WAIT = 45.0  # intake lease (30 s) + a round of adoption (10 s) + margin
METRICS_TOKEN = secrets.token_hex(16)
WARM_UP = 99999  # the person number of the warm-up questions


class LoreProcess:
    """One `python -m app serve`, in a process group of its own, logging to a file."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.env = env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the process and its children at once (an OOM kill, a node lost)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()


async def ready(session: aiohttp.ClientSession, lores: list[LoreProcess], within: float) -> float:
    """Wait until every process answers /readyz 200; the seconds it took."""
    began = time.monotonic()
    for lore in lores:
        while True:
            if lore.exited() is not None:
                raise RuntimeError(f"{lore.name} exited with {lore.exited()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{lore.url}/readyz", timeout=_seconds(2)) as response:
                    if response.status == 200:
                        break
            if time.monotonic() - began > within:
                raise TimeoutError(f"{lore.name} not ready after {within:.0f} s")
            await asyncio.sleep(0.2)
    return time.monotonic() - began


def _seconds(n: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=n)


@dataclass
class Turn:
    """A question or a lesson put to Lore, and when its reply was finished (perf_counter)."""

    kind: str  # "ask" or "teach"
    tag: str
    channel: str
    root: str
    before: int  # bot replies in the thread before this turn
    posted: float
    ts: str = ""  # the question's own ts
    finished: float | None = None


@dataclass
class Fault:
    kind: str
    began: float  # perf_counter
    ended: float = 0.0  # recovered (perf_counter)
    recovery_s: float = 0.0  # store or process back until both processes ready again

    @property
    def window(self) -> tuple[float, float]:
        return self.began, self.ended + GRACE


@dataclass
class Traffic:
    """What the people did."""

    turns: list[Turn] = field(default_factory=list)
    chatter: Counter[str] = field(default_factory=Counter)  # posted, replied, edited, deleted
    recalls: list[str] = field(default_factory=list)  # command ids acknowledged
    recalls_unacknowledged: int = 0


class Soak:
    """The people's loops and the fault rotation."""

    def __init__(
        self,
        emulator: TimedEmulator,
        lores: list[LoreProcess],
        stores: tuple[RedisServer, ChromaServer],
        fake_url: str,
        session: aiohttp.ClientSession,
        args: argparse.Namespace,
    ) -> None:
        self.emulator = emulator
        self.lores = lores
        self.redis, self.chroma = stores
        self.fake_url = fake_url
        self.session = session
        self.args = args
        self.traffic = Traffic()
        self.faults: list[Fault] = []
        self.rss: dict[str, list[dict[str, int]]] = {lore.name: [] for lore in lores}
        """Per process, per life (a restart starts one): RSS KiB after start-up and at the end."""
        self.started = 0.0
        self.deadline = 0.0
        self.load_began = 0.0  # perf_counter
        self.last_kill = 0.0

    async def run(self) -> None:
        self.started = time.monotonic()
        self.load_began = time.perf_counter()
        self.deadline = self.started + 60 * self.args.minutes
        people = [asyncio.create_task(self.person(n)) for n in range(self.args.threads)]
        faults = asyncio.create_task(self.rotate_faults())
        await asyncio.gather(*people)
        await faults

    async def person(self, n: int) -> None:
        chooser = random.Random(n)
        answered: list[Turn] = []
        step = 0
        await asyncio.sleep(chooser.uniform(0, 2))  # not all in the same millisecond
        while time.monotonic() < self.deadline:
            step += 1
            roll = chooser.random()
            if roll < 0.35:
                await self.ask(n, step, chooser, answered, None)
            elif roll < 0.5 and answered:
                await self.ask(n, step, chooser, answered, chooser.choice(answered[-5:]))
            elif roll < 0.65:
                await self.ask(n, step, chooser, answered, None, teach=True)
            elif roll < 0.95:
                await self.chat(n, step, chooser)
            else:
                await self.recall(chooser)
            await asyncio.sleep(chooser.uniform(0.5, 2.0))

    async def ask(
        self,
        n: int,
        step: int,
        chooser: random.Random,
        answered: list[Turn],
        follow: Turn | None,
        *,
        teach: bool = False,
    ) -> None:
        emulator = self.emulator
        user, channel = chooser.choice(ASKERS)
        topic = chooser.choice(TOPICS)
        bot = f"<@{emulator.config.bot_user_id}>"
        loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = loop.create_future()
        if follow is not None:
            tag = f"f-{n}-{step}"
            channel, root = follow.channel, follow.root
            before = len(emulator.bot_replies(channel, root, finished=False))
            posted = time.perf_counter()
            question = await emulator.post_message(
                user, channel, f"{tag} and what changed since about {topic}?", thread_ts=root
            )
        else:
            tag = f"{'t' if teach else 'q'}-{n}-{step}"
            if teach:
                text = f"{bot} {tag} please remember this for the team: {topic} is settled"
            else:
                text = f"{bot} {tag} what do we know about {topic}?"
            posted = time.perf_counter()
            question = await emulator.post_message(user, channel, text)
            root, before = str(question["ts"]), 0
        turn = Turn("teach" if teach else "ask", tag, channel, root, before, posted)
        turn.ts = str(question["ts"])
        self.traffic.turns.append(turn)
        emulator.awaited[(channel, root)] = (done, before + 1)
        try:
            turn.finished = await asyncio.wait_for(done, self.args.turn_timeout)
        except TimeoutError:
            return
        finally:
            emulator.awaited.pop((channel, root), None)
        replies = emulator.bot_replies(channel, root)
        if not teach and len(replies) > before and f"Answer to {tag}." in _text(replies[before]):
            answered.append(turn)

    async def chat(self, n: int, step: int, chooser: random.Random) -> None:
        emulator = self.emulator
        user, channel = chooser.choice(ASKERS)
        topic = chooser.choice(TOPICS)
        threads = [m["ts"] for m in emulator.messages(channel)[-40:] if _text(m).startswith("note")]
        if threads and chooser.random() < 0.3:
            posted = await emulator.post_message(
                user, channel, f"note {n}-{step}: +1 on {topic}", thread_ts=chooser.choice(threads)
            )
            self.traffic.chatter["replied"] += 1
        else:
            posted = await emulator.post_message(user, channel, f"note {n}-{step}: {topic} is fine")
            self.traffic.chatter["posted"] += 1
        roll = chooser.random()
        if roll < 0.55:
            return
        await asyncio.sleep(chooser.uniform(0.1, 1.5))
        if roll < 0.85:
            await emulator.edit_message(channel, posted["ts"], f"note {n}-{step} (edited): {topic}")
            self.traffic.chatter["edited"] += 1
        else:
            await emulator.delete_message(channel, posted["ts"])
            self.traffic.chatter["deleted"] += 1

    async def recall(self, chooser: random.Random) -> None:
        user, channel = chooser.choice(ASKERS)
        answer = await self.emulator.send_command(user, channel, "/recall", chooser.choice(TOPICS))
        if answer["ok"]:
            self.traffic.recalls.append(str(answer["response_url"]).rsplit("/", 1)[-1])
        else:
            self.traffic.recalls_unacknowledged += 1

    async def rotate_faults(self) -> None:
        for k in range(self.args.minutes):
            at = self.started + 30 + 60 * k
            if at >= self.deadline:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            kind = FAULTS[k % len(FAULTS)]
            fault = Fault(kind, time.perf_counter())
            self.faults.append(fault)
            print(f"{time.monotonic() - self.started:6.1f} s: {kind}", flush=True)
            back = await self.inject(kind)
            fault.recovery_s = await ready(self.session, self.lores, 180) + back
            fault.ended = time.perf_counter()
            print(f"{' ' * 10}recovered in {fault.recovery_s:.1f} s", flush=True)

    async def inject(self, kind: str) -> float:
        """Cause the fault and end it; seconds from its end to the store or process serving."""
        if kind == "redis restart":
            await asyncio.to_thread(self.redis.stop)
            await asyncio.sleep(STORE_DOWN)
            return await _timed(self.redis.start)
        if kind == "chroma restart":
            await asyncio.to_thread(self.chroma.stop)
            await asyncio.sleep(STORE_DOWN)
            return await _timed(self.chroma.start)
        if kind == "SIGKILL":
            victim = self.lores[1]
            self.rss[victim.name][-1]["end"] = tree_rss_kib(victim.pid)[1]
            victim.kill()
            self.last_kill = time.monotonic()
            victim.start()
            back = await ready(self.session, [victim], 180)
            self.rss[victim.name].append({"start": tree_rss_kib(victim.pid)[1]})
            return back
        if kind == "model 529":
            async with self.session.post(
                f"{self.fake_url}/_bench/overload", json={"seconds": BURST}
            ) as response:
                response.raise_for_status()
            await asyncio.sleep(BURST)
            return 0.0
        for method in SLACK_LIMITED:
            self.emulator.fail_method(method, "ratelimited", times=1_000_000, retry_after=1)
        await asyncio.sleep(BURST)
        self.emulator.faults.clear()
        return 0.0


async def _timed(start: Any) -> float:
    began = time.monotonic()
    await asyncio.to_thread(start)
    return time.monotonic() - began


def _text(message: dict[str, Any]) -> str:
    return str(message.get("text", ""))


def _answers(message: dict[str, Any], tag: str) -> bool:
    text = _text(message)
    return f"Answer to {tag}." in text or f"Not saved {tag}." in text


def deliveries_of(emulator: TimedEmulator, channel: str, ts: str) -> list[dict[str, Any]]:
    """The events about one message, in order, with each delivery attempt's outcome."""
    found = []
    for record in emulator.deliveries:
        event = record.body.get("event") or {}
        about = event.get("deleted_ts") or (event.get("message") or {}).get("ts") or event.get("ts")
        if event.get("channel") != channel or about != ts:
            continue
        found.append(
            {
                "event": f"{event.get('type')}/{event.get('subtype') or ''}",
                "event_id": record.event_id,
                "attempts": [f"{a.retry_num}:{a.status or a.reason}" for a in record.attempts],
                "delivered": record.delivered,
            }
        )
    return found


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0}
    if len(values) == 1:
        return {"n": 1, "p50": round(values[0], 1), "p95": round(values[0], 1)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"n": len(values), "p50": round(cuts[49], 1), "p95": round(cuts[94], 1)}


def turn_outcomes(soak: Soak) -> dict[str, Any]:
    """Each turn: answered, apology, not answered; and threads answered more than once."""
    outcome: Counter[str] = Counter()
    twice: list[dict[str, Any]] = []
    for turn in soak.traffic.turns:
        replies = soak.emulator.bot_replies(turn.channel, turn.root)
        mine = [r for r in replies if _answers(r, turn.tag)]
        if len(mine) > 1:
            twice.append(
                {
                    "tag": turn.tag,
                    "posted_s": round(turn.posted - soak.load_began, 1),
                    "replies": [(r["ts"], _text(r)[:60]) for r in mine],
                    "deliveries": deliveries_of(soak.emulator, turn.channel, turn.ts),
                }
            )
        reply = _text(replies[turn.before]) if len(replies) > turn.before else ""
        if any(f"Answer to {turn.tag}." in _text(r) for r in mine):
            outcome[f"{turn.kind} answered"] += 1
        elif f"Not saved {turn.tag}." in reply:
            outcome[f"{turn.kind} refused"] += 1
        elif reply.startswith(APOLOGY) or APOLOGY in reply:
            outcome[f"{turn.kind} apology"] += 1
        else:
            outcome[f"{turn.kind} not answered"] += 1
    return {"counts": dict(sorted(outcome.items())), "answered_twice": twice}


def overheads(soak: Soak, timings: list[dict[str, Any]]) -> dict[str, Any]:
    """Overhead of answered questions (not lessons): before the first fault, outside every
    fault window, inside one."""
    models = model_times(timings)
    windows = [fault.window for fault in soak.faults]
    first = windows[0][0] if windows else float("inf")
    groups: dict[str, list[float]] = {"before_first_fault": [], "outside": [], "inside": []}
    for turn in soak.traffic.turns:
        if turn.kind != "ask" or turn.finished is None or turn.tag not in models:
            continue
        replies = soak.emulator.bot_replies(turn.channel, turn.root)
        if not any(f"Answer to {turn.tag}." in _text(r) for r in replies):
            continue
        overhead = (turn.finished - turn.posted) * 1000 - models[turn.tag]
        hit = any(turn.posted <= end and turn.finished >= begin for begin, end in windows)
        groups["inside" if hit else "outside"].append(overhead)
        if turn.finished < first:
            groups["before_first_fault"].append(overhead)
    return {name: percentiles(values) for name, values in groups.items()}


def recall_outcomes(soak: Soak) -> dict[str, int]:
    responses = {
        r["command_id"]: _text(r)
        for r in soak.emulator.commands.responses
        if r["via"] == "response_url"
    }
    answered = [cid for cid in soak.traffic.recalls if cid in responses]
    failed = sum(1 for cid in answered if responses[cid].startswith(APOLOGY))
    return {
        "sent": len(soak.traffic.recalls) + soak.traffic.recalls_unacknowledged,
        "unacknowledged": soak.traffic.recalls_unacknowledged,
        "answered": len(answered) - failed,
        "apology": failed,
        "no_answer": len(soak.traffic.recalls) - len(answered),
    }


async def archive_state(
    database_url: str, chroma_url: str, team: str
) -> tuple[dict[Key, str], set[Key], MemoryCheckInput]:
    """The archive's records and vectors, and the `org` block's newest text and versions."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(archive_table.c.channel_id, archive_table.c.ts, archive_table.c.text).where(
                    archive_table.c.team_id == team
                )
            )
            records = {(str(c), str(ts)): str(text) for c, ts, text in rows}
        history = await MemoryBlocks(engine, LocalLocks()).history(
            team, "org", MemoryScope.everything()
        )
    finally:
        await engine.dispose()
    store = await open_http(chroma_url)
    try:
        vectors = await store.collection(collection_name(team, embedder_name()), create=False)
        found: set[str] = set()
        keys = {message_key(c, ts): (c, ts) for c, ts in records}
        ids = list(keys)
        for i in range(0, len(ids), 500):
            if vectors is not None:
                found.update(r.id for r in await vectors.get(ids[i : i + 500]))
    finally:
        await store.close()
    versions = [block.version for block in history]
    block = history[-1].value if history else ""
    return records, {keys[k] for k in found}, MemoryCheckInput(block, versions)


@dataclass
class MemoryCheckInput:
    block: str
    versions: list[int]


def memory_outcome(
    soak: Soak, timings: list[dict[str, Any]], memory: MemoryCheckInput
) -> MemoryCheck:
    served = {
        t["tag"]
        for t in timings
        if t.get("tool") == "memory_insert" and t.get("status") == 200 and t["tag"]
    }
    confirmed: set[str] = set()
    refused: set[str] = set()
    for turn in soak.traffic.turns:
        if turn.kind != "teach":
            continue
        texts = [_text(r) for r in soak.emulator.bot_replies(turn.channel, turn.root)]
        if any(f"Answer to {turn.tag}." in t for t in texts):
            confirmed.add(turn.tag)
        elif any(f"Not saved {turn.tag}." in t for t in texts):
            refused.add(turn.tag)
    line_of = {tag: f"fact {tag}" for tag in served | confirmed | refused}
    return check_memory(memory.block, served | confirmed, confirmed, refused, line_of)


def archive_outcome(
    soak: Soak, records: dict[Key, str], vectors: set[Key]
) -> tuple[ArchiveCheck, int]:
    emulator = soak.emulator
    acked = acknowledged(
        ((record.body.get("event") or {}, record.delivered) for record in emulator.deliveries),
        emulator.config.bot_user_id,
    )
    current: dict[Key, str | None] = {}
    for key in acked.posted:
        try:
            current[key] = _text(emulator.message(*key))
        except EmulatorError:  # deleted in Slack
            current[key] = None
    return check_archive(acked, records, vectors, current), acked.unacknowledged


def explain(soak: Soak, key: Key, records: dict[Key, str]) -> dict[str, Any]:
    """One message the archive check found wrong: what Slack shows, what the archive holds,
    and what became of each event about it."""
    try:
        now: str | None = _text(soak.emulator.message(*key))
    except EmulatorError:  # deleted in Slack
        now = None
    return {
        "message": list(key),
        "slack_text": now,
        "archived_text": records.get(key),
        "deliveries": deliveries_of(soak.emulator, *key),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lore-soak-"))
    redis = RedisServer(work / "redis")
    chroma = ChromaServer(work / "chroma")
    postgres = PostgresServer()
    fake: subprocess.Popen[str] | None = None
    emulator: TimedEmulator | None = None
    balancer: Balancer | None = None
    lores: list[LoreProcess] = []
    try:
        redis.start()
        chroma.start()
        postgres.init()
        postgres.start()
        fake, fake_url = start_fake(2)
        emulator = TimedEmulator(EmulatorConfig(events_url=None, retry_delays=(1.0, 5.0, 10.0)))
        await emulator.start()
        for n in range(2):
            env = serve_env(
                emulator,
                PORT=str(free_port()),
                LORE_HOST="127.0.0.1",
                LORE_DATA_DIR=str(work / f"lore{n}"),
                ANTHROPIC_API_KEY=secrets.token_hex(16),
                ANTHROPIC_BASE_URL=fake_url,
                REDIS_URL=redis.url,
                DATABASE_URL=postgres.url,
                CHROMA_URL=chroma.url,
                LORE_METRICS_TOKEN=METRICS_TOKEN,
                LORE_MEMORY_BLOCK_LIMIT=str(args.block_limit),
                LORE_LOG_LEVEL=args.log_level,
            )
            lores.append(LoreProcess(f"lore{n}", env, work / f"lore{n}.log"))
        balancer = Balancer([lore.url for lore in lores], random.Random(5))
        await balancer.start()
        emulator.config.events_url = balancer.url
        async with aiohttp.ClientSession() as session:
            for lore in lores:  # one after the other: a fresh database's schema is made once
                lore.start()
                await ready(session, [lore], 300)
            soak = Soak(emulator, lores, (redis, chroma), fake_url, session, args)
            await warm_up(soak)
            for lore in lores:
                soak.rss[lore.name].append({"start": tree_rss_kib(lore.pid)[1]})
            print(f"load: {args.threads} people for {args.minutes} min", flush=True)
            await soak.run()
            print("load over; waiting for every event and for both processes to be idle")
            await settle(soak, emulator, lores)
            for lore in lores:
                soak.rss[lore.name][-1]["end"] = tree_rss_kib(lore.pid)[1]
            timings = await fetch_timings(session, fake_url)
        records, vectors, memory = await archive_state(
            postgres.url, chroma.url, emulator.config.team_id
        )
        archive, unacked = archive_outcome(soak, records, vectors)
        return {
            "benchmark": "soak",
            "minutes": args.minutes,
            "threads": args.threads,
            "turns": turn_outcomes(soak),
            "recall": recall_outcomes(soak),
            "chatter": dict(soak.traffic.chatter),
            "faults": [
                {
                    "kind": f.kind,
                    "at_s": round(f.began - soak.faults[0].began + 30, 1),
                    "recovery_s": round(f.recovery_s, 1),
                }
                for f in soak.faults
            ],
            "archive": {
                "expected": archive.expected,
                **{
                    name: [explain(soak, key, records) for key in getattr(archive, name)]
                    for name in ("missing", "stale", "deleted_but_kept", "vectors_missing")
                },
                "unacknowledged_events": unacked,
                "failovers": balancer.failovers,
            },
            "memory": {
                **vars(memory_outcome(soak, timings, memory)),
                "versions": len(memory.versions),
                "versions_contiguous": memory.versions == list(range(1, len(memory.versions) + 1)),
            },
            "rss_kib": soak.rss,
            "lore_starts": {lore.name: lore.starts for lore in lores},
            "overhead_ms": overheads(soak, timings),
        }
    finally:
        for lore in lores:
            lore.stop()
        if balancer is not None:
            await balancer.stop()
        if emulator is not None:
            await emulator.stop()
        if fake is not None:
            fake.terminate()
            fake.wait(timeout=30)
        chroma.stop()
        redis.stop()
        postgres.remove()
        if args.keep:
            print(f"kept {work} (Lore logs: lore0.log, lore1.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)


async def warm_up(soak: Soak) -> None:
    """A few questions answered before the clock starts (models loaded, connections open)."""
    chooser = random.Random(-1)
    soak.deadline = time.monotonic() + 3600
    await asyncio.gather(*(soak.ask(WARM_UP, n, chooser, [], None) for n in range(4)))
    soak.traffic = Traffic()


async def settle(soak: Soak, emulator: TimedEmulator, lores: list[LoreProcess]) -> None:
    """Every event delivered (Slack's retries included), both processes idle, and what a killed
    process left in the intake adopted by now."""
    await emulator.drain()
    wait = soak.last_kill + ADOPTION_WAIT - time.monotonic() if soak.last_kill else 0.0
    await asyncio.sleep(max(0.0, wait))  # the intake lease has no completion signal to await
    await settled_processes(emulator, [lore.url for lore in lores], METRICS_TOKEN, within=600)


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    turns = result["turns"]["counts"]
    archive, memory, overhead = result["archive"], result["memory"], result["overhead_ms"]
    rss = result["rss_kib"]
    rows = [
        (
            "questions answered / apology / not answered",
            f"{turns.get('ask answered', 0)} / {turns.get('ask apology', 0)} / "
            f"{turns.get('ask not answered', 0)}",
        ),
        (
            "lessons answered / refused / apology / not answered",
            f"{turns.get('teach answered', 0)} / {turns.get('teach refused', 0)} / "
            f"{turns.get('teach apology', 0)} / {turns.get('teach not answered', 0)}",
        ),
        ("turns answered more than once (goal 0)", str(len(result["turns"]["answered_twice"]))),
        (
            "/recall answered / apology / no answer",
            f"{result['recall']['answered']} / {result['recall']['apology']} / "
            f"{result['recall']['no_answer'] + result['recall']['unacknowledged']}",
        ),
        ("acknowledged messages (posted, not deleted)", str(archive["expected"])),
        ("missing from the archive (goal 0)", str(len(archive["missing"]))),
        (
            "edit not applied / deleted but kept / no vector (goal 0)",
            f"{len(archive['stale'])} / {len(archive['deleted_but_kept'])} / "
            f"{len(archive['vectors_missing'])}",
        ),
        (
            "memory edits made by the model / confirmed",
            f"{memory['served']} / {memory['confirmed']}",
        ),
        (
            "memory edits lost / doubled (goal 0)",
            f"{len(memory['lost'])} / {len(memory['doubled'])}",
        ),
        (
            "memory edits cut by a fault before confirmation, not kept",
            str(len(memory["not_applied"])),
        ),
    ]
    for name, lives in rss.items():
        shown = " / ".join(
            f"{life['start'] / 1024:.0f} -> {life['end'] / 1024:.0f}" for life in lives
        )
        rows.append((f"RSS {name} after start-up -> end MiB, per life", shown))
    for name in ("before_first_fault", "outside", "inside"):
        o = overhead[name]
        rows.append(
            (
                f"overhead p50 / p95 ms, {name.replace('_', ' ')} (n={o['n']})",
                f"{o['p50']:.0f} / {o['p95']:.0f}",
            )
        )
    print()
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        "faults: "
        + "; ".join(
            f"{f['kind']} at {f['at_s']:.0f} s (back in {f['recovery_s']:.1f} s)"
            for f in result["faults"]
        )
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="length of the load")
    parser.add_argument("--threads", type=int, default=200, help="people acting at once")
    parser.add_argument("--turn-timeout", type=float, default=120.0, help="seconds per reply")
    parser.add_argument(
        "--block-limit",
        type=int,
        default=200_000,
        help="LORE_MEMORY_BLOCK_LIMIT (room for lessons)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument("--log-level", default="WARNING", help="LORE_LOG_LEVEL of both processes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak.json")
    args = parser.parse_args()
    report(args, asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
