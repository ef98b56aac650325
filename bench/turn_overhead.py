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
until Lore is idle again, so it includes the archiving a turn leaves behind (`--profile`: where
that CPU goes, per thread and per function, see bench/lore_profile.py; `--app floor`: the
same turns answered by bench/turn_floor.py, the floor under Lore's CPU per turn). Prints
p50/p95/p99 of the overhead per load (goal at 200: p95 <= 150 ms) and writes them, with
latency and model time, to `--out` for bench/chart.py.

After each round, every answered thread gets a follow-up (no mention: Lore answers because it
replied there), all at once, measured the same way as "follow-up" turns (`--no-follow-ups`:
none). For both kinds of turn it also reports what a turn costs:
- model tokens per turn and per tool step (step 0 is a turn's first request): input
  (uncached), output, read from the prompt cache and written to it, as the fake reports them
  (tests/fake_anthropic.py `PromptCache`: chars/4 per prompt block, the tool-use system prompt,
  a 1024-token minimum, five minutes), and the share of input tokens read from cache
  (goal for follow-ups: >= 60%), and the input's price in uncached tokens (a cache write
  costs 1.25 of one, a read 0.1);
- Slack Web API calls per turn by method, from the emulator's call log over the round (posts
  until Lore is idle again), divided by the questions posted.

    .venv/bin/python bench/turn_overhead.py [--loads 1,50,100,200] [--samples 100] [--steps 2]
        [--no-follow-ups] [--out bench/turn_overhead.json] [--app lore|floor]
        [--profile PROFILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
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
        self.awaited: dict[tuple[str, str], tuple[asyncio.Future[float], int]] = {}

    async def _web_api(self, request: web.Request) -> web.Response:
        response = await super()._web_api(request)
        method, args = self.calls[-1] if self.calls else ("", {})
        if method == request.match_info["method"] and method in FINISHING and self.awaited:
            channel = str(args.get("channel") or "")
            ts = str(args.get("ts") or args.get("thread_ts") or "")
            root = self.workspace.thread_root(channel, ts) if channel and ts else ""
            waiting, replies = self.awaited.get((channel, root), (None, 0))
            if (
                waiting is not None
                and not waiting.done()
                and len(self.bot_replies(channel, root)) >= replies
            ):
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
    """CPU seconds spent while rounds run: by Lore (with its child processes, e.g. Chroma's
    worker), by its serving process alone, by this process (the emulator and the driver) and by
    the fake model."""

    def __init__(self, lore: int, fake: int) -> None:
        self.lore_pid = lore
        self._pids = {
            "Lore": (lore, True),
            "Lore serving process": (lore, False),
            "emulator": (os.getpid(), False),
            "model": (fake, True),
        }
        self.seconds: dict[int, dict[str, float]] = {}

    def _now(self) -> dict[str, float]:
        return {k: cpu_seconds(pid, descendants=d) for k, (pid, d) in self._pids.items()}

    @contextlib.contextmanager
    def counting(self, phase: object = None) -> Iterator[None]:
        """Count the CPU used meanwhile towards `phase`."""
        counted = self.seconds.setdefault(id(phase), dict.fromkeys(self._pids, 0.0))
        before = self._now()
        yield
        for name, value in self._now().items():
            counted[name] += value - before[name]

    def take(self, phase: object = None) -> dict[str, float]:
        """The seconds counted towards `phase` since the last take."""
        counted = self.seconds.pop(id(phase), dict.fromkeys(self._pids, 0.0))
        return {k: round(v, 2) for k, v in counted.items()}


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {f"p{q}": 0.0 for q in (50, 95, 99)}  # no turn answered: see "turns"
    return {f"p{q}": round(percentile(values, q), 2) for q in (50, 95, 99)}


async def fetch_timings(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Every request the fake model answered: tag, server time, step and usage."""
    async with session.get(f"{url}/_bench/timings") as response:
        timings: list[dict[str, Any]] = await response.json()
    return timings


def model_times(timings: list[dict[str, Any]]) -> dict[str, float]:
    """Summed server time per question tag."""
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


Where = tuple[str, str]
"""A thread: (channel, ts of its parent)."""


async def ask_round(
    emulator: TimedEmulator,
    load: int,
    round_id: int,
    within: float,
    threads: dict[int, Where] | None = None,
) -> tuple[dict[str, float], dict[str, Where]]:
    """Post `load` mentions at once, each a new thread (tags q-R-N); or, given the `threads`
    of an earlier round, a follow-up without a mention in each (tags f-R-N), which Lore answers
    because it replied there. Returns seconds from post to finished reply by tag (for the
    replies that finished `within` seconds), and the thread of every question."""
    loop = asyncio.get_running_loop()
    posted: dict[str, tuple[float, asyncio.Future[float], str, str]] = {}
    for i in range(load):
        user, channel = ASKERS[i % len(ASKERS)]
        done: asyncio.Future[float] = loop.create_future()
        if threads is None:
            tag = f"q-{round_id}-{i}"
            text = f"<@{emulator.config.bot_user_id}> {tag} what do we know about {TOPICS[i % 6]}?"
            started = time.perf_counter()
            message = await emulator.post_message(user, channel, text)
            root, replies = str(message["ts"]), 1
        else:
            tag = f"f-{round_id}-{i}"
            channel, root = threads[i]
            text = f"{tag} and what changed since about {TOPICS[i % 6]}?"
            started = time.perf_counter()
            await emulator.post_message(user, channel, text, thread_ts=root)
            replies = 2
        emulator.awaited[(channel, root)] = (done, replies)
        posted[tag] = (started, done, channel, root)
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


def answered(emulator: SlackEmulator, tag: str, where: Where) -> bool:
    """Whether the thread's reply to `tag` (its first for q-, its second for f-) is the fake's."""
    replies = emulator.bot_replies(*where)
    nth = 1 if tag.startswith("f-") else 0
    return len(replies) > nth and f"Answer to {tag}." in str(replies[nth].get("text", ""))


TOKENS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_creation": "cache_creation_input_tokens",
}


@dataclass
class Phase:
    """What one kind of turn (first in its thread, or follow-up) cost at one load."""

    turns: list[Turn] = field(default_factory=list)
    failed: int = 0
    tokens: list[dict[str, int]] = field(default_factory=list)  # one per answered turn
    steps: dict[int, list[dict[str, int]]] = field(default_factory=dict)  # per model request
    calls: Counter[str] = field(default_factory=Counter)  # Web API calls by method
    posted: int = 0

    def add_usage(self, timings: list[dict[str, Any]], tags: set[str]) -> None:
        per_turn: dict[str, dict[str, int]] = {}
        for timing in timings:
            usage = timing.get("usage")
            if timing["tag"] not in tags or not usage:
                continue
            counted = {name: int(usage.get(key) or 0) for name, key in TOKENS.items()}
            self.steps.setdefault(int(timing.get("step") or 0), []).append(counted)
            total = per_turn.setdefault(timing["tag"], dict.fromkeys(TOKENS, 0))
            for name, value in counted.items():
                total[name] += value
        self.tokens.extend(per_turn.values())

    def row(self, cpu: dict[str, float]) -> dict[str, Any]:
        turns = self.turns
        return {
            "turns": len(turns),
            "failed": self.failed,
            "overhead_ms": summary([t.overhead for t in turns]),
            "latency_ms": summary([t.latency for t in turns]),
            "model_ms": summary([t.model for t in turns]),
            "cpu_ms_per_turn": {
                k: round(1000 * v / max(1, self.posted), 1) for k, v in cpu.items()
            },
            "tokens_per_turn": mean_tokens(self.tokens),
            "cache_read_share": cache_read_share(self.tokens),
            "input_cost_per_turn": input_cost(self.tokens),
            "tokens_per_step": {str(k): mean_tokens(v) for k, v in sorted(self.steps.items())},
            "web_api_calls_per_turn": {
                method: round(n / max(1, self.posted), 2)
                for method, n in sorted(self.calls.items())
            },
        }


def mean_tokens(rows: list[dict[str, int]]) -> dict[str, float]:
    return {
        name: round(statistics.mean(r[name] for r in rows), 1) if rows else 0.0 for name in TOKENS
    }


def input_cost(rows: list[dict[str, int]]) -> float:
    """Mean input price per turn in uncached tokens: a cache write costs 1.25 of one (five-minute
    entries), a read 0.1 (Anthropic's prompt-caching prices)."""
    if not rows:
        return 0.0
    return round(
        statistics.mean(
            r["input"] + 1.25 * r["cache_creation"] + 0.1 * r["cache_read"] for r in rows
        ),
        1,
    )


def cache_read_share(rows: list[dict[str, int]]) -> float:
    """Of all input tokens (uncached, read from cache, written to cache), the share read."""
    read = sum(r["cache_read"] for r in rows)
    total = sum(r["input"] + r["cache_read"] + r["cache_creation"] for r in rows)
    return round(read / total, 3) if total else 0.0


async def measure_load(
    emulator: TimedEmulator,
    session: aiohttp.ClientSession,
    fake_url: str,
    cpu: CpuUse,
    load: int,
    args: argparse.Namespace,
    first_round: int,
) -> dict[str, Phase]:
    """Rounds of `load` new threads, each followed (`--follow-ups`) by a round of follow-ups
    in the threads answered; each kind of turn measured on its own."""
    phases = {"first": Phase(), "follow_up": Phase()}
    for r in range(math.ceil(args.samples / load)):
        round_id = first_round + r
        answered_threads = await measure_round(
            emulator, session, fake_url, cpu, phases["first"], load, round_id, args, None
        )
        if args.follow_ups and answered_threads:
            await measure_round(
                emulator,
                session,
                fake_url,
                cpu,
                phases["follow_up"],
                len(answered_threads),
                round_id,
                args,
                dict(enumerate(answered_threads)),
            )
    return phases


async def measure_round(
    emulator: TimedEmulator,
    session: aiohttp.ClientSession,
    fake_url: str,
    cpu: CpuUse,
    phase: Phase,
    load: int,
    round_id: int,
    args: argparse.Namespace,
    threads: dict[int, Where] | None,
) -> list[Where]:
    """One round into `phase`; the threads whose question was answered."""
    await lore_idle(cpu.lore_pid)
    calls_before = len(emulator.calls)
    with cpu.counting(phase):  # to idle again: the archiving a turn leaves behind counts too
        seconds, where = await ask_round(emulator, load, round_id, args.timeout, threads)
        await lore_idle(cpu.lore_pid)
    phase.calls.update(method for method, _ in emulator.calls[calls_before:])
    phase.posted += len(where)
    timings = await fetch_timings(session, fake_url)
    models = model_times(timings)
    done: list[Where] = []
    for tag, place in where.items():
        if tag in seconds and tag in models and answered(emulator, tag, place):
            phase.turns.append(Turn(seconds[tag] * 1000, models[tag]))
            done.append(place)
        else:
            phase.failed += 1
    phase.add_usage(timings, set(where))
    return done


def start_fake(steps: int, stream_seconds: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """bench/fake_model.py in its own process; the process and its base URL."""
    command = [sys.executable, str(ROOT / "bench" / "fake_model.py"), f"--steps={steps}"]
    process = subprocess.Popen(
        [*command, f"--stream-seconds={stream_seconds}"],
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
    command = (
        ["-m", "app", "serve"] if args.app == "lore" else [str(ROOT / "bench" / "turn_floor.py")]
    )
    if args.profile is not None:  # the same, profiled over the measured rounds
        profiler = [str(ROOT / "bench" / "lore_profile.py"), str(args.profile.resolve())]
        command = [*profiler, *(["serve"] if args.app == "lore" else command)]
    lore = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env)
    results: list[dict[str, Any]] = []
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/readyz", lore)
        cpu = CpuUse(lore.pid, fake.pid)
        async with aiohttp.ClientSession() as session:
            warm = await measure_load(emulator, session, fake_url, cpu, 5, _warm_up(args), 0)
            for phase in warm.values():
                cpu.take(phase)
            if args.profile is not None:
                lore.send_signal(signal.SIGUSR1)
            first_round = 1
            for load in loads:
                phases = await measure_load(
                    emulator, session, fake_url, cpu, load, args, first_round
                )
                first_round += math.ceil(args.samples / load)
                if not phases["first"].turns:
                    raise RuntimeError(f"no turn was answered at load {load}")
                row: dict[str, Any] = {
                    "load": load,
                    **phases["first"].row(cpu.take(phases["first"])),
                }
                if phases["follow_up"].posted:
                    row["follow_up"] = phases["follow_up"].row(cpu.take(phases["follow_up"]))
                results.append(row)
                for kind, figures in (("first", row), ("follow-up", row.get("follow_up"))):
                    if figures:
                        print_row(load, kind, figures)
    finally:
        if args.profile is not None:
            await stop_profile(lore, args.profile)
        lore.terminate()
        lore.wait(timeout=120)
        fake.terminate()
        fake.wait(timeout=30)
        await emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, results)


async def stop_profile(lore: subprocess.Popen[bytes], out: Path) -> None:
    """Have the profiled Lore write its profile (bench/lore_profile.py), and wait for it."""
    await asyncio.to_thread(out.unlink, missing_ok=True)
    lore.send_signal(signal.SIGUSR2)
    for _ in range(100):
        if await asyncio.to_thread(out.exists):
            return
        await asyncio.sleep(0.1)
    print(f"warning: no profile written to {out}", flush=True)


def print_row(load: int, kind: str, row: dict[str, Any]) -> None:
    o, lat = row["overhead_ms"], row["latency_ms"]
    print(
        f"load {load:4d} {kind:9s}: {row['turns']} turns ({row['failed']} failed)  overhead "
        f"p50 {o['p50']:8.1f}  p95 {o['p95']:8.1f}  p99 {o['p99']:8.1f} ms  (latency p95 "
        f"{lat['p95']:.1f} ms); CPU ms per turn {row['cpu_ms_per_turn']}; tokens per turn "
        f"{row['tokens_per_turn']} (read from cache {100 * row['cache_read_share']:.0f}%); "
        f"Web API calls per turn {row['web_api_calls_per_turn']}",
        flush=True,
    )


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
    report_costs(results)
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


def report_costs(results: list[dict[str, Any]]) -> None:
    """Model tokens and Slack Web API calls per turn, for first and follow-up turns."""
    print()
    print(
        "| threads at once | turn | input | output | cache read | cache creation "
        "| read share | input cost | per step (input / read / creation) | Web API calls per turn |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in results:
        for kind, figures in (("first", row), ("follow-up", row.get("follow_up"))):
            if not figures:
                continue
            t = figures["tokens_per_turn"]
            steps = "; ".join(
                f"{step}: {s['input']:.0f} / {s['cache_read']:.0f} / {s['cache_creation']:.0f}"
                for step, s in figures["tokens_per_step"].items()
            )
            calls = ", ".join(
                f"{method} {n:g}" for method, n in figures["web_api_calls_per_turn"].items()
            )
            print(
                f"| {row['load']} | {kind} | {t['input']:.0f} | {t['output']:.0f} "
                f"| {t['cache_read']:.0f} | {t['cache_creation']:.0f} "
                f"| {100 * figures['cache_read_share']:.0f}% "
                f"| {figures['input_cost_per_turn']:.0f} "
                f"| {steps} | {calls} |"
            )
    shares = [r["follow_up"]["cache_read_share"] for r in results if r.get("follow_up")]
    if shares:
        verdict = "met" if min(shares) >= 0.6 else "NOT met"
        print(
            f"follow-up turns read {100 * min(shares):.0f}% or more of their input tokens "
            f"from cache (goal >= 60%: {verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", default="1,50,100,200", help="threads asking at once")
    parser.add_argument("--samples", type=int, default=100, help="turns at least, per load")
    parser.add_argument("--steps", type=int, choices=(1, 2), default=2, help="model calls a turn")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per round")
    parser.add_argument(
        "--follow-ups",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after each round, ask a follow-up in every answered thread",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "turn_overhead.json")
    parser.add_argument(
        "--app",
        choices=("lore", "floor"),
        default="lore",
        help="what answers: Lore, or bench/turn_floor.py (the same turn through Lore's chosen "
        "parts alone, without Lore's code)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run Lore under bench/lore_profile.py and write its CPU profile of the measured "
        "rounds here (JSON, and the folded stacks beside it)",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
