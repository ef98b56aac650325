"""Ack latency: signed event POST -> HTTP 200, Lore beside a bare Bolt app, in one run.

Both servers run as their own processes against one Slack emulator and receive the same kind of
traffic: N plain channel messages (Lore archives each one, embeddings included, in the
background) at concurrency C. Prints p50/p99 for each and the ratio; goal: Lore's p99 <= 1.2x.
It also prints each server's CPU per event, from /proc: its event loop's thread, and the whole
process (Lore's embedding thread included, its Chroma worker process not), over the blast and
until the machine is idle again. And the machine's load average before and after; and, once Lore
has stopped, whether it archived every message it acknowledged: one record and one unit-length
vector each.

    .venv/bin/python bench/ack_latency.py [--events 1000] [--concurrency 50] [--rounds 2]
        [--json-out bench/ack_latency.json]

`--json-out` adds this run's p50/p99 to a JSON file, one entry per concurrency (a re-run at the
same concurrency replaces it), which bench/chart.py draws against load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import Settings
from bench.signed_events import message_event_body, signed_headers
from emulator import EmulatorConfig, SlackEmulator
from memory.archive import collection_name
from memory.embeddings import INT8_NAME, MODEL_NAME
from memory.lexical import TABLE

MODEL_DIR = ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
TEAM = "T0LORE"
WARM_UP = 50
TEXTS = [
    "the deploy to prod is blocked until the migration finishes",
    "who is on call this week for payments?",
    "we decided to move the offsite to March",
    "customer Acme asked for SSO again, see the ticket",
]


def embedder_name() -> str:
    """The vector space Lore writes with the LORE_EMBEDDING_PRECISION it is given (or its
    default)."""
    default = Settings.model_fields["lore_embedding_precision"].default
    precision = os.environ.get("LORE_EMBEDDING_PRECISION", default)
    return INT8_NAME if precision == "int8" else MODEL_NAME


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"server exited early with {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def warm_up_events(concurrency: int) -> int:
    """Events sent before each measured blast: enough to open every connection it reuses."""
    return max(WARM_UP, concurrency)


def client_session(concurrency: int) -> aiohttp.ClientSession:
    """One load generator's connections, `concurrency` of them, kept open between blasts."""
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=120)
    return aiohttp.ClientSession(connector=connector)


async def blast(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    events: int,
    concurrency: int,
    channel: str,
) -> list[float]:
    """POST `events` signed message events, `concurrency` at a time; return latencies in ms.
    The load generator collects no garbage meanwhile: its own pauses (~80 ms for a full
    collection) are not the server's latency."""
    latencies: list[float] = []
    counter = iter(range(events))
    base = time.time()

    async def worker() -> None:
        for n in counter:
            ts = f"{base + n / 1000:.6f}"
            body = message_event_body(TEAM, channel, "U0ALICE", TEXTS[n % len(TEXTS)], ts)
            start = time.perf_counter()
            async with session.post(url, data=body, headers=signed_headers(secret, body)) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
            latencies.append((time.perf_counter() - start) * 1000)

    gc.collect()
    gc.disable()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        gc.enable()
    return latencies


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


async def machine_idle(threshold: float = 0.9, window: float = 0.5, limit: float = 60.0) -> None:
    """Wait until the machine is mostly idle, so no server's leftover work skews a round."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        idle0, total0 = cpu_times()
        await asyncio.sleep(window)
        idle1, total1 = cpu_times()
        if (idle1 - idle0) / max(1, total1 - total0) >= threshold:
            return
    print("warning: the machine never became idle; figures may be skewed", flush=True)


def thread_cpu_ms(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) of one thread of `pid` (its main thread by default), in ms."""
    fields = Path(f"/proc/{pid}/task/{tid or pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def process_cpu_ms(pid: int) -> float:
    """CPU time (user + system) of all threads of `pid`, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def archived(data_dir: Path) -> tuple[int, int, float]:
    """What a stopped Lore stored for TEAM: (records, vectors, least norm of 200 vectors)."""
    with sqlite3.connect(data_dir / "lore.db") as db:
        query = f"SELECT count(*) FROM {TABLE} WHERE team_id = ?"
        records = int(db.execute(query, (TEAM,)).fetchone()[0])
    client = chromadb.PersistentClient(
        str(data_dir / "chroma"), ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_collection(collection_name(TEAM, embedder_name()))
    sample = collection.get(limit=200, include=["embeddings"])["embeddings"]
    return records, collection.count(), float(np.linalg.norm(sample, axis=1).min())


def serve_env(emulator: SlackEmulator, **settings: str) -> dict[str, str]:
    """The environment of a `python -m app serve` (or bare Bolt) against emulator: its Slack
    credentials, the test model, WARNING logs and no Anthropic key; then `settings`."""
    cfg = emulator.config
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": cfg.bot_token,
        "SLACK_SIGNING_SECRET": cfg.signing_secret,
        "SLACK_API_URL": emulator.api_url,
        "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
        "LORE_LOG_LEVEL": "WARNING",
    }
    env.pop("ANTHROPIC_API_KEY", None)
    return {**env, **settings}


async def measure(args: argparse.Namespace) -> None:
    emulator = SlackEmulator(EmulatorConfig(events_url=None))
    await emulator.start()
    cfg = emulator.config
    work = Path(tempfile.mkdtemp(prefix="lore-ack-"))
    env = serve_env(emulator, LORE_DATA_DIR=str(work / "data"))
    servers = {
        "bare Bolt": [sys.executable, str(ROOT / "bench" / "bare_bolt.py")],
        "Lore": [sys.executable, "-m", "app", "serve"],
    }
    results: dict[str, list[float]] = {name: [] for name in servers}
    loop_cpu: dict[str, float] = {name: 0.0 for name in servers}
    all_cpu: dict[str, float] = {name: 0.0 for name in servers}
    processes = {}
    print(f"load average (1, 5, 15 min) before: {load_average()}", flush=True)
    try:
        for name, command in servers.items():
            port = free_port()
            processes[name] = (
                subprocess.Popen(command, cwd=ROOT, env={**env, "PORT": str(port)}),
                port,
            )
        for process, port in processes.values():
            await wait_healthy(f"http://127.0.0.1:{port}/slack/events", process)
        for round_number in range(args.rounds):
            for name, (process, port) in processes.items():
                url = f"http://127.0.0.1:{port}/slack/events"
                async with client_session(args.concurrency) as session:
                    warm_up = warm_up_events(args.concurrency)
                    await blast(
                        session, url, cfg.signing_secret, warm_up, args.concurrency, "C0RANDOM"
                    )
                    await machine_idle()
                    loop0, all0 = thread_cpu_ms(process.pid), process_cpu_ms(process.pid)
                    latencies = await blast(
                        session, url, cfg.signing_secret, args.events, args.concurrency, "C0GENERAL"
                    )
                await machine_idle()  # the archiving the events left behind counts too
                loop_cpu[name] += thread_cpu_ms(process.pid) - loop0
                all_cpu[name] += process_cpu_ms(process.pid) - all0
                results[name].extend(latencies)
                print(
                    f"round {round_number + 1} {name:9s} p50 {percentile(latencies, 50):7.2f} ms"
                    f"  p99 {percentile(latencies, 99):7.2f} ms",
                    flush=True,
                )
    finally:
        for process, _port in processes.values():
            process.terminate()
            process.wait(timeout=60)
        await emulator.stop()
    print(f"load average (1, 5, 15 min) after: {load_average()}")
    records, vectors, least_norm = archived(work / "data")
    sent = args.rounds * (args.events + warm_up_events(args.concurrency))
    print(
        f"Lore archived {records} of the {sent} messages it acknowledged, {vectors} vectors "
        f"(least norm {least_norm:.3f})"
    )
    if not records == vectors == sent or abs(least_norm - 1.0) > 1e-3:
        print("warning: Lore did not archive every message with its embedding", flush=True)
    print()
    print(f"{args.events} events x {args.rounds} rounds at concurrency {args.concurrency}")
    print("| server | p50 ms | p99 ms | event-loop CPU ms/event | process CPU ms/event |")
    print("|---|---|---|---|---|")
    events = args.events * args.rounds
    for name, latencies in results.items():
        print(
            f"| {name} | {percentile(latencies, 50):.2f} | {percentile(latencies, 99):.2f} "
            f"| {loop_cpu[name] / events:.3f} | {all_cpu[name] / events:.3f} |"
        )
    lore99 = percentile(results["Lore"], 99)
    bare99 = percentile(results["bare Bolt"], 99)
    print(f"p99 ratio Lore / bare Bolt = {lore99 / bare99:.2f} (goal <= 1.2)")
    if args.json_out is not None:
        write_json(args, results)


def write_json(args: argparse.Namespace, results: dict[str, list[float]]) -> None:
    """Add this run to args.json_out, replacing an earlier run at the same concurrency."""
    path: Path = args.json_out
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    run = {
        "concurrency": args.concurrency,
        "events": args.events,
        "rounds": args.rounds,
        "servers": {
            name: {"p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2)}
            for name, v in results.items()
        },
    }
    runs = [r for r in runs if r["concurrency"] != args.concurrency] + [run]
    runs.sort(key=lambda r: r["concurrency"])
    path.write_text(json.dumps({"benchmark": "ack_latency", "runs": runs}, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json-out", type=Path, default=None, help="add the figures to a JSON")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
