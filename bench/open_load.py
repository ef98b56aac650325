"""Open load: questions arriving at random in 200 active threads; overhead and capacity.

Lore answers through a fake Messages API in its own process (bench/fake_model.py) that streams
each answer over `--stream-seconds` (default 2) per call: a `search_conversations` tool_use,
then the text (`--steps 1`: the text alone). `--threads` (default 200) threads are opened first,
each with a mention Lore answers (not measured). Then, for each rate R (`--rates`, turns a
second), follow-up questions (no mention: Lore answers because it replied there) arrive as a
Poisson process at rate R for `--seconds`, each in a thread chosen at random among those not
waiting for an answer (a person asks again once answered); an arrival that finds every thread
waiting is counted as `no_idle_thread` and not posted. Per turn, as in bench/turn_overhead.py:
overhead = latency (post to the reply's completion in the emulator) - the fake model's own time
for the turn's requests. Turns that arrive in a run's first `--settle` seconds are left out of
the figures (the queue is still filling). A rate "holds" when its overhead p95 is within
`--goal-ms` (150) and every question is answered; the capacity is the highest rate that holds,
found by at most `--probes` further runs: doubling from the highest rate that held until one
does not, then bisecting until the bracket is within `--precision` (10%) of its bottom.
Before each run Lore is let go idle (no work pending at its /metrics, then its CPU quiet); each
run reports the machine's load average (1 min) at its start and end, the machine's CPU busy
share and the cores that Lore (its processes and their children) and this process (the
emulator, whose Web API answers count in the overhead) used, and how many events the emulator
delivered again, as Slack does when an event is not acknowledged within 3 s.

Shapes (`--shapes`, run one after the other, in one invocation so their ratio is side by side):
- `embedded`: one `python -m app serve` on its embedded stores (Chroma, SQLite, in-process locks);
- `servers-N`: N processes sharing a Redis, a Chroma server and a PostgreSQL cluster of the
  bench's own on free ports (README "Scaling out"), behind a round-robin balancer;
- `floor`: bench/turn_floor.py instead of Lore, the same turns through Lore's chosen parts
  alone (its idle check is its CPU alone).
Capacity ratios are printed against the first shape with the same stores and one process.

    .venv/bin/python bench/open_load.py [--shapes embedded,servers-1,servers-2]
        [--rates 10,20,40] [--seconds 60] [--settle 10] [--probes 4] [--threads 200]
        [--stream-seconds 2] [--steps 2] [--out bench/open_load.json]

LORE_MAX_CONCURRENT_TURNS and the other LORE_* settings are taken from the environment.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ack_latency import cpu_times, free_port, serve_env, wait_healthy
from bench.balancer import Balancer
from bench.procstat import cpu_seconds
from bench.turn_overhead import (
    ASKERS,
    TOPICS,
    TimedEmulator,
    fetch_timings,
    model_times,
    start_fake,
    summary,
)
from emulator import EmulatorConfig
from tests.harness import work_pending_at
from tests.processes import ChromaServer, PostgresServer, RedisServer

GOAL_MS = 150.0
METRICS_TOKEN = secrets.token_hex(16)
Where = tuple[str, str]
"""A thread: (channel, ts of its parent)."""


@dataclass
class Shape:
    """How Lore runs: how many processes, on which stores."""

    name: str
    processes: int
    servers: bool
    floor: bool = False

    @property
    def command(self) -> list[str]:
        if self.floor:
            return [sys.executable, str(ROOT / "bench" / "turn_floor.py")]
        return [sys.executable, "-m", "app", "serve"]

    @classmethod
    def parse(cls, name: str) -> Shape:
        if name == "embedded":
            return cls(name, 1, False)
        if name == "floor":
            return cls(name, 1, False, floor=True)
        if name.startswith("servers-") and name.removeprefix("servers-").isdigit():
            return cls(name, int(name.removeprefix("servers-")), True)
        raise argparse.ArgumentTypeError(f"unknown shape {name!r}")


@contextlib.contextmanager
def stores(shape: Shape, work: Path) -> Iterator[dict[str, str]]:
    """The settings of the stores the shape's processes share (none when embedded)."""
    if not shape.servers:
        yield {}
        return
    redis = RedisServer(work / "redis")
    chroma = ChromaServer(work / "chroma")
    postgres = PostgresServer()
    try:
        redis.start()
        chroma.start()
        postgres.init()
        postgres.start()
        yield {"REDIS_URL": redis.url, "CHROMA_URL": chroma.url, "DATABASE_URL": postgres.url}
    finally:
        redis.stop()
        chroma.stop()
        postgres.remove()


@dataclass(frozen=True)
class Lores:
    """The running Lore processes: their ids and URLs."""

    pids: list[int]
    urls: list[str]
    metrics: bool = True  # they answer /metrics (bench/turn_floor.py does not)


@contextlib.asynccontextmanager
async def running(
    shape: Shape, emulator: TimedEmulator, model_url: str, work: Path
) -> AsyncIterator[Lores]:
    """The shape's Lore processes, serving the emulator's events."""
    with stores(shape, work) as shared:
        processes: list[subprocess.Popen[bytes]] = []
        urls: list[str] = []
        balancer: Balancer | None = None
        try:
            for n in range(shape.processes):
                port = free_port()
                env = serve_env(
                    emulator,
                    **shared,
                    LORE_DATA_DIR=str(work / f"lore{n}"),
                    ANTHROPIC_API_KEY="bench-key",
                    ANTHROPIC_BASE_URL=model_url,
                    PORT=str(port),
                    LORE_METRICS_TOKEN=METRICS_TOKEN,
                )
                processes.append(subprocess.Popen(shape.command, cwd=ROOT, env=env))
                urls.append(f"http://127.0.0.1:{port}")
            for url, process in zip(urls, processes, strict=True):
                await wait_healthy(f"{url}/readyz", process)
            if len(urls) > 1:
                balancer = Balancer(urls)
                await balancer.start()
                emulator.config.events_url = balancer.url
            else:
                emulator.config.events_url = f"{urls[0]}/slack/events"
            yield Lores([process.pid for process in processes], urls, metrics=not shape.floor)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=120)
            if balancer is not None:
                await balancer.stop()


async def idle(lores: Lores, limit: float) -> None:
    """Wait until every Lore process has no work under way (`lore_work_pending`: turns, jobs,
    messages being archived), then uses under 5% of a core (with its children)."""
    deadline = time.monotonic() + limit
    while lores.metrics and time.monotonic() < deadline:
        if not any([await work_pending_at(url, METRICS_TOKEN) for url in lores.urls]):
            break
        await asyncio.sleep(0.5)
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in lores.pids]
        await asyncio.sleep(0.25)
        if all(cpu_seconds(p) - b < 0.0125 for p, b in zip(lores.pids, before, strict=True)):
            return
    print("warning: Lore never went idle; figures may be skewed", flush=True)


@dataclass
class Threads:
    """The active threads: where each is, and the ones waiting for an answer."""

    places: list[Where]
    waiting: set[int] = field(default_factory=set)
    asked: int = 0  # follow-ups posted so far, for unique tags

    def idle(self) -> list[int]:
        return [i for i in range(len(self.places)) if i not in self.waiting]


async def open_threads(emulator: TimedEmulator, count: int, within: float) -> Threads:
    """Post `count` mentions, each a new thread, and wait for Lore's answers."""
    loop = asyncio.get_running_loop()
    places: list[Where] = []
    answers: list[asyncio.Future[float]] = []
    for i in range(count):
        user, channel = ASKERS[i % len(ASKERS)]
        text = f"<@{emulator.config.bot_user_id}> q-0-{i} what do we know about {TOPICS[i % 6]}?"
        message = await emulator.post_message(user, channel, text)
        done: asyncio.Future[float] = loop.create_future()
        emulator.awaited[(channel, str(message["ts"]))] = (done, 1)
        places.append((channel, str(message["ts"])))
        answers.append(done)
    try:
        await asyncio.wait_for(asyncio.gather(*answers), within)
    finally:
        for place in places:
            emulator.awaited.pop(place, None)
    return Threads(places)


@dataclass
class Asked:
    """One follow-up posted: its thread, when, and the future its reply's completion sets."""

    thread: int
    at: float
    done: asyncio.Future[float]


async def ask_open(
    emulator: TimedEmulator, threads: Threads, rate: float, seconds: float, rng: random.Random
) -> tuple[dict[str, Asked], int]:
    """Follow-ups arriving as a Poisson process at `rate` a second for `seconds`, each in a
    random idle thread; the questions posted by tag, and the arrivals that found no idle
    thread."""
    loop = asyncio.get_running_loop()
    asked: dict[str, Asked] = {}
    no_idle = 0
    start = time.perf_counter()
    due = rng.expovariate(rate)
    while due < seconds:
        await asyncio.sleep(max(0.0, start + due - time.perf_counter()))
        due += rng.expovariate(rate)
        idle_threads = threads.idle()
        if not idle_threads:
            no_idle += 1
            continue
        n = rng.choice(idle_threads)
        channel, root = threads.places[n]
        threads.asked += 1
        tag = f"f-{threads.asked}-{n}"
        done: asyncio.Future[float] = loop.create_future()
        emulator.awaited[(channel, root)] = (done, len(emulator.bot_replies(channel, root)) + 1)
        threads.waiting.add(n)
        done.add_done_callback(lambda _, n=n: threads.waiting.discard(n))
        user = ASKERS[n % len(ASKERS)][0]
        text = f"{tag} and what changed since about {TOPICS[n % 6]}?"
        asked[tag] = Asked(n, time.perf_counter(), done)
        await emulator.post_message(user, channel, text, thread_ts=root)
    return asked, no_idle


def answered(emulator: TimedEmulator, tag: str, where: Where) -> bool:
    """Whether the thread holds Lore's answer to `tag`."""
    return any(f"Answer to {tag}." in str(r.get("text", "")) for r in emulator.bot_replies(*where))


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


async def run_rate(
    emulator: TimedEmulator,
    session: aiohttp.ClientSession,
    model_url: str,
    lores: Lores,
    threads: Threads,
    rate: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One run at `rate`: its overhead figures, failures and the load it ran under."""
    await idle(lores, args.timeout)
    pids = lores.pids
    rng = random.Random(f"{rate}-{threads.asked}")
    load_before = load_average()
    idle0, total0 = cpu_times()
    cpu0 = sum(cpu_seconds(pid) for pid in pids)
    driver0 = cpu_seconds(os.getpid(), descendants=False)
    deliveries = len(emulator.deliveries)
    started = time.perf_counter()
    asked, no_idle = await ask_open(emulator, threads, rate, args.seconds, rng)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(a.done for a in asked.values())), args.seconds + args.timeout
        )
    wall = time.perf_counter() - started
    cpu1 = sum(cpu_seconds(pid) for pid in pids)
    driver1 = cpu_seconds(os.getpid(), descendants=False)
    idle1, total1 = cpu_times()
    load_after = load_average()
    for a in asked.values():
        if not a.done.done():
            a.done.cancel()
    for place in {threads.places[a.thread] for a in asked.values()}:
        emulator.awaited.pop(place, None)
    threads.waiting.clear()
    models = model_times(await fetch_timings(session, model_url))
    delivered = emulator.deliveries[deliveries:]
    overheads, latencies, model_ms, failed, measured = [], [], [], 0, 0
    for tag, a in asked.items():
        if a.at - started < args.settle:
            continue
        measured += 1
        place = threads.places[a.thread]
        if a.done.cancelled() or tag not in models or not answered(emulator, tag, place):
            failed += 1
            continue
        latency = (a.done.result() - a.at) * 1000
        overheads.append(latency - models[tag])
        latencies.append(latency)
        model_ms.append(models[tag])
    overhead = summary(overheads)
    row = {
        "rate": rate,
        "seconds": args.seconds,
        "asked": len(asked),
        "measured": measured,
        "answered": len(overheads),
        "failed": failed,
        "no_idle_thread": no_idle,
        "events": len(delivered),
        "events_retried": sum(1 for d in delivered if len(d.attempts) > 1),
        "overhead_ms": overhead,
        "latency_ms": summary(latencies),
        "model_ms": summary(model_ms),
        "holds": bool(overheads)
        and failed == 0
        and no_idle <= 0.01 * (len(asked) + no_idle)
        and overhead["p95"] <= args.goal_ms,
        "load_average": [load_before, load_after],
        "machine_busy": round(1 - (idle1 - idle0) / max(1, total1 - total0), 2),
        "lore_cores": round((cpu1 - cpu0) / wall, 2),
        "emulator_cores": round((driver1 - driver0) / wall, 2),
        "lore_cpu_ms_per_turn": round(1000 * (cpu1 - cpu0) / max(1, len(asked)), 1),
    }
    o = row["overhead_ms"]
    print(
        f"  R {rate:6.2f}/s: {row['answered']}/{measured} answered ({failed} failed, "
        f"{no_idle} found no idle thread; {row['events_retried']} of {row['events']} events "
        f"delivered again)  overhead p50 {o['p50']:.1f}  p95 {o['p95']:.1f}  "
        f"p99 {o['p99']:.1f} ms  model p50 {row['model_ms']['p50']:.0f} ms  "
        f"{'holds' if row['holds'] else 'does not hold'}; load {load_before} -> {load_after}, "
        f"machine busy {100 * row['machine_busy']:.0f}%, Lore {row['lore_cores']} cores, "
        f"emulator {row['emulator_cores']} cores, "
        f"{row['lore_cpu_ms_per_turn']} CPU ms/turn",
        flush=True,
    )
    return row


def next_probe(runs: list[dict[str, Any]], precision: float) -> float | None:
    """The next rate to try for the capacity, or None once it is bracketed closely enough."""
    held = [r["rate"] for r in runs if r["holds"]]
    best = max(held, default=0.0)
    above = [r["rate"] for r in runs if not r["holds"] and r["rate"] > best]
    if not above:
        return best * 2
    worst = min(above)
    if best == 0.0:
        return worst / 2 if worst > 0.5 else None
    if worst <= best * (1 + precision):
        return None
    return round((best + worst) / 2, 2)


def capacity(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    held = [r["rate"] for r in runs if r["holds"]]
    best = max(held, default=0.0)
    above = [r["rate"] for r in runs if not r["holds"] and r["rate"] > best]
    return {"turns_per_second": best, "fails_at": min(above, default=None)}


async def measure_shape(
    shape: Shape, emulator: TimedEmulator, session: aiohttp.ClientSession, args: argparse.Namespace
) -> dict[str, Any]:
    """The shape's runs at each rate and its capacity, with a fake model of its own."""
    work = Path(tempfile.mkdtemp(prefix="lore-open-"))
    model, model_url = start_fake(args.steps, args.stream_seconds)
    try:
        async with running(shape, emulator, model_url, work) as lores:
            print(f"{shape.name}: opening {args.threads} threads", flush=True)
            threads = await open_threads(emulator, args.threads, args.timeout)
            runs = [
                await run_rate(emulator, session, model_url, lores, threads, rate, args)
                for rate in args.rates
            ]
            for _ in range(args.probes):
                probe = next_probe(runs, args.precision)
                if probe is None:
                    break
                runs.append(
                    await run_rate(emulator, session, model_url, lores, threads, probe, args)
                )
    finally:
        model.terminate()
        model.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    found = capacity(runs)
    print(
        f"{shape.name}: capacity {found['turns_per_second']} turns/s (p95 <= {args.goal_ms:g} ms; "
        f"the next rate tried, {found['fails_at']}, does not hold)",
        flush=True,
    )
    return {
        "shape": shape.name,
        "processes": shape.processes,
        "stores": "servers" if shape.servers else "floor" if shape.floor else "embedded",
        "runs": runs,
        "capacity": found,
    }


async def measure(args: argparse.Namespace) -> None:
    emulator = TimedEmulator(EmulatorConfig(events_url=None))
    await emulator.start()
    results: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for shape in args.shapes:
                results.append(await measure_shape(shape, emulator, session, args))
    finally:
        await emulator.stop()
    report(args, results)


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    """Each shape's capacity over that of the one-process shape on the same stores."""
    single = {r["stores"]: r for r in results if r["processes"] == 1}
    out = {}
    for r in results:
        base = single.get(r["stores"])
        if base is not None and r is not base and base["capacity"]["turns_per_second"]:
            out[f"{r['shape']} / {base['shape']}"] = round(
                r["capacity"]["turns_per_second"] / base["capacity"]["turns_per_second"], 2
            )
    return out


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print()
    print(
        f"model: fake server streaming each answer over {args.stream_seconds:g} s, "
        f"{args.steps} call(s) a turn; {args.threads} threads; overhead = latency - model time"
    )
    print(
        "| shape | R turns/s | answered / asked | overhead p50 / p95 / p99 ms | model p50 ms "
        "| holds | load avg (start, end) | machine busy | Lore cores |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for run in sorted(result["runs"], key=lambda r: r["rate"]):
            o = run["overhead_ms"]
            print(
                f"| {result['shape']} | {run['rate']:g} | {run['answered']} / {run['measured']} "
                f"| {o['p50']:.1f} / {o['p95']:.1f} / {o['p99']:.1f} "
                f"| {run['model_ms']['p50']:.0f} | {'yes' if run['holds'] else 'no'} "
                f"| {run['load_average'][0]}, {run['load_average'][1]} "
                f"| {100 * run['machine_busy']:.0f}% | {run['lore_cores']} |"
            )
    for result in results:
        found = result["capacity"]
        print(
            f"{result['shape']}: capacity {found['turns_per_second']:g} turns/s "
            f"(goal >= 60: {'met' if found['turns_per_second'] >= 60 else 'NOT met'})"
        )
    shares = ratios(results)
    for name, ratio in shares.items():
        print(f"capacity ratio {name} = {ratio:.2f}")
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "open_load",
                "threads": args.threads,
                "steps": args.steps,
                "stream_seconds": args.stream_seconds,
                "seconds": args.seconds,
                "settle": args.settle,
                "goal_ms": args.goal_ms,
                "max_concurrent_turns": os.environ.get("LORE_MAX_CONCURRENT_TURNS", "default"),
                "shapes": results,
                "capacity_ratios": shares,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        type=lambda s: [Shape.parse(n) for n in s.split(",")],
        default=[Shape.parse(n) for n in ("embedded", "servers-1", "servers-2")],
    )
    parser.add_argument(
        "--rates", type=lambda s: [float(n) for n in s.split(",")], default=[10.0, 20.0, 40.0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="of arrivals per run")
    parser.add_argument("--settle", type=float, default=10.0, help="first seconds left out")
    parser.add_argument("--probes", type=int, default=4, help="runs to find the capacity")
    parser.add_argument("--precision", type=float, default=0.1)
    parser.add_argument("--goal-ms", type=float, default=GOAL_MS)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--stream-seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, choices=(1, 2), default=2, help="model calls a turn")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait past a run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "open_load.json")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
