"""Turn overhead: N threads each asking Lore at once; event -> reply posted, minus model time.

A running Lore (`python -m app serve`, its default embedded stores unless DATABASE_URL /
REDIS_URL are set in the environment) answers through the Anthropic SDK a fake Messages API
in its own process (bench/fake_model.py), which answers at once: by default a
`search_conversations` tool_use, then the text (`--steps 1`: the text alone). For each load
(`--loads`, default 1, 50, 100, 200 threads), rounds of that many users' mentions are posted in
the Slack emulator at the same moment, each a new thread, as many rounds as it takes to reach
`--samples` turns. Per turn:
- latency: from the post (the emulator sends its signed `message` and `app_mention` events at
  once) to the reply's completion in the emulator (chat.stopStream, or the final post/update);
- model time: the fake server's own time for each of the turn's requests, arrival to end of
  response, summed;
- overhead = latency - model time: Lore's work, queueing for a turn slot
  (LORE_MAX_CONCURRENT_TURNS) included, and the emulator's Web API answers (the emulator runs in
  this process).
A reply counts only if it is the fake's answer for that thread. Before each round Lore is let
go idle (its process tree's CPU). CPU per turn counts each process's CPU from a round's posts
until Lore is idle again, so it includes the archiving a turn leaves behind. Prints
p50/p95/p99 of the overhead per load (goal at 200: p95 <= 150 ms) and writes them, with
latency and model time, to `--out` for bench/chart.py.

    .venv/bin/python bench/turn_overhead.py [--loads 1,50,100,200] [--samples 100] [--steps 2]
        [--out bench/turn_overhead.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ack_latency import free_port, serve_env, wait_healthy
from bench.procstat import cpu_seconds
from emulator import EmulatorConfig, SlackEmulator

MODEL_DIR = ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
FINISHING = frozenset({"chat.stopStream", "chat.update", "chat.postMessage"})
ASKERS = [
    ("U0ALICE", "C0GENERAL"),
    ("U0BOB", "C0RANDOM"),
    ("U0CAROL", "C0GENERAL"),
    ("U0BOB", "C0GENERAL"),
]
TOPICS = [
    "the deploy freeze",
    "who is on call for payments",
    "the offsite date",
    "Acme's SSO request",
    "the postgres upgrade",
    "the Q3 launch",
]


class TimedEmulator(SlackEmulator):
    """The emulator, noting when each awaited thread's bot reply is finished."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
        self.awaited: dict[tuple[str, str], asyncio.Future[float]] = {}

    async def _web_api(self, request: web.Request) -> web.Response:
        response = await super()._web_api(request)
        method, args = self.calls[-1] if self.calls else ("", {})
        if method == request.match_info["method"] and method in FINISHING and self.awaited:
            channel = str(args.get("channel") or "")
            ts = str(args.get("ts") or args.get("thread_ts") or "")
            root = self.workspace.thread_root(channel, ts) if channel and ts else ""
            waiting = self.awaited.get((channel, root))
            if waiting is not None and not waiting.done() and self.bot_replies(channel, root):
                waiting.set_result(time.perf_counter())
        return response


@dataclass(frozen=True)
class Turn:
    """One answered thread: milliseconds end to end, at the model server, and the rest."""

    latency: float
    model: float

    @property
    def overhead(self) -> float:
        return self.latency - self.model


class CpuUse:
    """CPU seconds spent while rounds run: by Lore (with its child processes), by this process
    (the emulator and the driver) and by the fake model."""

    def __init__(self, lore: int, fake: int) -> None:
        self.lore_pid = lore
        self._pids = {"Lore": (lore, True), "emulator": (os.getpid(), False), "model": (fake, True)}
        self.seconds = dict.fromkeys(self._pids, 0.0)

    def _now(self) -> dict[str, float]:
        return {k: cpu_seconds(pid, descendants=d) for k, (pid, d) in self._pids.items()}

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        before = self._now()
        yield
        for name, value in self._now().items():
            self.seconds[name] += value - before[name]

    def take(self) -> dict[str, float]:
        """The seconds counted since the last take."""
        taken = {k: round(v, 2) for k, v in self.seconds.items()}
        self.seconds = dict.fromkeys(self._pids, 0.0)
        return taken


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q), 2) for q in (50, 95, 99)}


async def model_times(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Summed server time per question tag, from the fake model."""
    async with session.get(f"{url}/_bench/timings") as response:
        timings: list[dict[str, Any]] = await response.json()
    totals: dict[str, float] = {}
    for timing in timings:
        if timing["tag"]:
            totals[timing["tag"]] = totals.get(timing["tag"], 0.0) + timing["ms"]
    return totals


async def lore_idle(pid: int, limit: float = 60.0) -> None:
    """Wait until Lore's process tree uses under 5% of a core (leftover archiving done)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.25)
        if cpu_seconds(pid) - before < 0.0125:
            return
    print("warning: Lore never went idle; figures may be skewed", flush=True)


async def ask_round(
    emulator: TimedEmulator, load: int, round_id: int, within: float
) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """Post `load` mentions at once. Returns seconds from post to finished reply by tag (for
    the replies that finished `within` seconds), and the (channel, ts) of every question."""
    loop = asyncio.get_running_loop()
    posted: dict[str, tuple[float, asyncio.Future[float], str, str]] = {}
    for i in range(load):
        tag = f"q-{round_id}-{i}"
        user, channel = ASKERS[i % len(ASKERS)]
        text = f"<@{emulator.config.bot_user_id}> {tag} what do we know about {TOPICS[i % 6]}?"
        started = time.perf_counter()
        message = await emulator.post_message(user, channel, text)
        done: asyncio.Future[float] = loop.create_future()
        emulator.awaited[(channel, message["ts"])] = done
        posted[tag] = (started, done, channel, message["ts"])
    try:
        await asyncio.wait_for(asyncio.gather(*(p[1] for p in posted.values())), within)
    except TimeoutError:
        pass
    finally:
        for _, _, channel, ts in posted.values():
            emulator.awaited.pop((channel, ts), None)
    seconds = {
        tag: done.result() - started
        for tag, (started, done, _, _) in posted.items()
        if done.done() and not done.cancelled()
    }
    return seconds, {tag: (channel, ts) for tag, (_, _, channel, ts) in posted.items()}


def answered(emulator: SlackEmulator, tag: str, where: tuple[str, str]) -> bool:
    replies = emulator.bot_replies(*where)
    return bool(replies) and f"Answer to {tag}." in str(replies[0].get("text", ""))


async def measure_load(
    emulator: TimedEmulator,
    session: aiohttp.ClientSession,
    fake_url: str,
    cpu: CpuUse,
    load: int,
    args: argparse.Namespace,
    first_round: int,
) -> tuple[list[Turn], int]:
    turns: list[Turn] = []
    failed = 0
    for r in range(math.ceil(args.samples / load)):
        await lore_idle(cpu.lore_pid)
        with cpu.counting():  # to idle again: the archiving a turn leaves behind counts too
            seconds, where = await ask_round(emulator, load, first_round + r, args.timeout)
            await lore_idle(cpu.lore_pid)
        models = await model_times(session, fake_url)
        for tag, place in where.items():
            if tag in seconds and tag in models and answered(emulator, tag, place):
                turns.append(Turn(seconds[tag] * 1000, models[tag]))
            else:
                failed += 1
    return turns, failed


def start_fake(steps: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_model.py"), f"--steps={steps}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if line[:1] != ["ready"]:
        process.kill()
        raise RuntimeError("the fake model server did not start")
    return process, f"http://127.0.0.1:{line[1]}"


async def measure(args: argparse.Namespace) -> None:
    loads = [int(n) for n in args.loads.split(",")]
    port = free_port()
    emulator = TimedEmulator(EmulatorConfig(events_url=f"http://127.0.0.1:{port}/slack/events"))
    await emulator.start()
    fake, fake_url = start_fake(args.steps)
    work = Path(tempfile.mkdtemp(prefix="lore-turns-"))
    env = serve_env(
        emulator,
        LORE_DATA_DIR=str(work / "data"),
        ANTHROPIC_API_KEY="bench-key",
        ANTHROPIC_BASE_URL=fake_url,
        PORT=str(port),
    )
    lore = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env)
    results: list[dict[str, Any]] = []
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/readyz", lore)
        cpu = CpuUse(lore.pid, fake.pid)
        async with aiohttp.ClientSession() as session:
            await measure_load(emulator, session, fake_url, cpu, 5, _warm_up(args), 0)
            cpu.take()
            first_round = 1
            for load in loads:
                turns, failed = await measure_load(
                    emulator, session, fake_url, cpu, load, args, first_round
                )
                first_round += math.ceil(args.samples / load)
                if not turns:
                    raise RuntimeError(f"no turn was answered at load {load}")
                row: dict[str, Any] = {
                    "load": load,
                    "turns": len(turns),
                    "failed": failed,
                    "overhead_ms": summary([t.overhead for t in turns]),
                    "latency_ms": summary([t.latency for t in turns]),
                    "model_ms": summary([t.model for t in turns]),
                    "cpu_ms_per_turn": {
                        k: round(1000 * v / (len(turns) + failed), 1) for k, v in cpu.take().items()
                    },
                }
                results.append(row)
                o, lat = row["overhead_ms"], row["latency_ms"]
                print(
                    f"load {load:4d}: {len(turns)} turns ({failed} failed)  overhead p50 "
                    f"{o['p50']:8.1f}  p95 {o['p95']:8.1f}  p99 {o['p99']:8.1f} ms  "
                    f"(latency p95 {lat['p95']:.1f} ms); CPU ms per turn {row['cpu_ms_per_turn']}",
                    flush=True,
                )
    finally:
        lore.terminate()
        lore.wait(timeout=120)
        fake.terminate()
        fake.wait(timeout=30)
        await emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, results)


def _warm_up(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "samples": 5})


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    steps = "search tool_use, then text" if args.steps == 2 else "text only"
    print()
    print(f"model: fake server, answers at once ({steps}); overhead = latency - model time")
    print("| threads at once | turns | failed | overhead p50 / p95 / p99 ms | model p50 ms |")
    print("|---|---|---|---|---|")
    for row in results:
        o = row["overhead_ms"]
        print(
            f"| {row['load']} | {row['turns']} | {row['failed']} "
            f"| {o['p50']:.1f} / {o['p95']:.1f} / {o['p99']:.1f} | {row['model_ms']['p50']:.1f} |"
        )
    top = results[-1]
    p95 = top["overhead_ms"]["p95"]
    verdict = "met" if p95 <= 150 else "NOT met"
    print(f"at {top['load']} threads: overhead p95 {p95:.1f} ms (goal <= 150 ms: {verdict})")
    if results[0]["overhead_ms"]["p95"] > 0:
        ratio = p95 / results[0]["overhead_ms"]["p95"]
        print(f"ratio overhead p95 at {top['load']} / at {results[0]['load']} = {ratio:.2f}")
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "turn_overhead",
                "steps": args.steps,
                "samples": args.samples,
                "max_concurrent_turns": os.environ.get("LORE_MAX_CONCURRENT_TURNS", "default"),
                "loads": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", default="1,50,100,200", help="threads asking at once")
    parser.add_argument("--samples", type=int, default=100, help="turns at least, per load")
    parser.add_argument("--steps", type=int, choices=(1, 2), default=2, help="model calls a turn")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per round")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "turn_overhead.json")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
