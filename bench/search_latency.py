"""Search latency at 100,000 messages: hybrid `Archive.search` beside a raw Chroma query.

Run: .venv/bin/python bench/search_latency.py [--messages 100000] [--queries 200]
     [--database-url URL [--schema NAME] [--keep]] [--data DIR]

With `--database-url` the workspace's rows are deleted from that database at the end unless
`--keep` (which lets a re-run skip the ingest); `--schema` puts the tables in a PostgreSQL
schema of that name (created if missing, dropped at the end unless `--keep`).

One workspace of synthetic Slack traffic: ~20 channels (four of them private), thousands of
threads and top-level messages over a year, texts made of one to three clauses (a few long
messages of many) drawn from 30,000 clauses: workplace sentences from templates whose topic
words follow a Zipf law over a 30,000-word vocabulary (the words of the LoCoMo conversations
and made-up jargon), and the LoCoMo sentences themselves (evaluation data in shared/bench-data,
not part of the product); ticket ids and commit hashes are sprinkled in as rare terms.

Only the clauses are embedded with the model; a message's vector is the normalised mean of its
clauses' vectors (the model itself mean-pools), written through `Archive.add(..., vectors=)`.
Ingest time is printed but is not what is measured. On PostgreSQL the table is then ANALYZEd,
as autovacuum does after a bulk load (the machine's PostgreSQL runs with autovacuum off, and
without statistics the planner misjudged the lexical search: p95 80 ms against 47 ms, cold).

Measured, one query at a time, each with a channel filter and the audience of an answer posted
in some channel (public channels plus that one):
- hybrid: `Archive.search` end to end: query embedding, lexical and dense retrieval, fusion and
  re-reading the hits from the record;
- raw Chroma: `collection.query` with the same `where` (what `Archive` would send Chroma as a
  metadata filter), n_results=10 and a precomputed query embedding, through the same Chroma
  worker process Lore uses, and after the archive is closed from an in-process PersistentClient;
- for reference, the raw query without any filter (no channel filter, no audience);
- where the time goes: the hybrid queries again, each part of them timed (query embedding,
  lexical retrieval, dense retrieval, Chroma query, the scope's ids, record fetch), as
  p50 / p95 over all queries and as means over the slowest 5%. The parts overlap (the lexical
  and dense retrievals run together), so they do not add up to the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from sqlalchemy import text

from bench.ack_latency import load_average
from bench.database import bench_engine, create_schema, drop_schema
from memory.archive import Archive, ArchivedMessage, SearchFilters, build_where, collection_name
from memory.audience import Audience
from memory.embeddings import OnnxEmbedder
from memory.lexical import TABLE

SHARED = ROOT.parent / "shared"
MODEL_DIR = SHARED / "models" / "all-MiniLM-L6-v2"
LOCOMO = SHARED / "bench-data" / "locomo-dev.json"
TEAM = "TBENCH"
START = 1_690_000_000.0
YEAR = 365 * 86_400.0

TEAMS = "platform payments growth search mobile web infra data security billing support".split()
SERVICES = (
    "checkout api gateway auth service billing worker search indexer notification queue "
    "analytics pipeline mobile app web dashboard postgres cluster redis cache kafka topic "
    "cdn edge onboarding flow admin console export job import job feature flags sso login"
).split()
VERBS = (
    "deployed rolled back migrated upgraded patched benchmarked refactored reviewed paused "
    "restarted scaled down scaled up load tested documented deprecated monitored debugged"
).split()
PROBLEMS = [
    "latency spike",
    "memory leak",
    "timeout",
    "error rate jump",
    "flaky test",
    "disk pressure",
    "cold start",
    "rate limiting",
    "connection pool exhaustion",
    "schema drift",
    "certificate expiry",
    "retry storm",
    "deadlock",
    "cache miss storm",
    "stale read",
    "duplicate events",
    "out of order delivery",
]
PEOPLE = "Ana Ben Chen Dara Eli Fatima Gus Hana Ivan Jo Kemal Lena Mo Nia Omar Priya".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday next week tomorrow tonight".split()
CUSTOMERS = "Acme Globex Initech Umbrella Hooli Stark Wayne Wonka Soylent Vandelay".split()
TEMPLATES = [
    "{team} {verb} the {service} {day}; the {topic} change is next.",
    "We saw a {problem} on the {service} after the {topic} deploy.",
    "Can someone from {team} look at the {problem} in {service}? It mentions {topic}.",
    "{person} is on call for {service} {day}, and {person2} covers {topic}.",
    "{customer} reported a {problem} when using {topic} with the {service}.",
    "The {service} postmortem is up; root cause was a {problem} in {topic}.",
    "I {verb} the {topic} {topic2} and the {problem} went away.",
    "Heads up: {topic} maintenance {day}, expect a brief {problem} on {service}.",
    "{person} and {person2} are pairing on {topic} {topic2}.",
    "Reminder that {team} demo is {day}; {person} presents {topic} and {topic2}.",
    "Do we have a runbook for {problem} on {topic}?",
    "{customer} wants the {topic} SLA in writing before renewal.",
    "Metrics for {topic} look normal again after {person} {verb} it.",
    "Budget for {team} next quarter includes the {topic} {topic2} rewrite.",
    "Is {topic} still blocked on {topic2}, or can {team} ship it {day}?",
    "Notes from the {topic} sync: {topic2}, {topic3}, and the {service} backlog.",
    "Has anyone tried {topic} for {topic2}? {person} suggested it.",
    "The {topic} doc now covers {topic2} and {topic3}.",
]
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(rng: random.Random, locomo: list[str], size: int) -> list[str]:
    """A long-tailed vocabulary: the LoCoMo words and made-up jargon (project and tool names),
    in a random order that the Zipf sampling below turns into frequencies."""
    words = {w.lower() for c in locomo for w in re.findall(r"[A-Za-z]{3,}", c)}
    while len(words) < size:
        parts = rng.choices(SYLLABLES, k=rng.randint(2, 4))
        words.add("".join(parts) + rng.choice(["", "", "x", "n", "r", "s"]))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


def workplace_clauses(rng: random.Random, n: int, words: list[str]) -> list[str]:
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.07
    zipf /= zipf.sum()
    picks = iter(np.random.default_rng(rng.getrandbits(32)).choice(len(words), 4 * n, p=zipf))
    clauses: set[str] = set()
    while len(clauses) < n:
        people = rng.sample(PEOPLE, 2)
        topics = [words[next(picks)] for _ in range(3)]
        clauses.add(
            rng.choice(TEMPLATES).format(
                team=rng.choice(TEAMS).capitalize(),
                verb=rng.choice(VERBS),
                service=rng.choice(SERVICES),
                problem=rng.choice(PROBLEMS),
                person=people[0],
                person2=people[1],
                day=rng.choice(DAYS),
                customer=rng.choice(CUSTOMERS),
                topic=topics[0],
                topic2=topics[1],
                topic3=topics[2],
            )
        )
    return sorted(clauses)


def locomo_clauses() -> list[str]:
    clauses: list[str] = []
    for sample in json.loads(LOCOMO.read_text()):
        conversation = sample["conversation"]
        for key, turns in conversation.items():
            if re.fullmatch(r"session_\d+", key):
                for turn in turns:
                    parts = re.split(r"(?<=[.!?])\s+", turn.get("text", ""))
                    clauses.extend(p for p in parts if len(p) > 12)
    return sorted(set(clauses))


def rare_token(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(['INC', 'OPS', 'PAY', 'SEC'])}-{rng.randint(1000, 99999)}"
    return f"{rng.getrandbits(28):07x}"


def synthesise(
    rng: random.Random, n: int, clause_count: int
) -> tuple[list[ArchivedMessage], list[list[int]]]:
    """n messages (oldest first) and, for each, the clause indexes its text is made of."""
    channels = [(f"C{i:02d}", "channel") for i in range(16)] + [
        (f"G{i:02d}", "group") for i in range(4)
    ]
    weights = [1.0 / (i + 1) ** 0.7 for i in range(len(channels))]  # busy and quiet channels
    users = [f"U{i:03d}" for i in range(120)]
    open_threads: dict[str, list[str]] = {c: [] for c, _ in channels}
    messages: list[ArchivedMessage] = []
    parts: list[list[int]] = []
    times = sorted(START + rng.random() * YEAR for _ in range(n))
    for i, when in enumerate(times):
        channel, channel_type = rng.choices(channels, weights)[0]
        threads = open_threads[channel]
        ts = f"{when:.6f}"[:-6] + f"{i % 1_000_000:06d}"
        thread_ts = None
        roll = rng.random()
        if threads and roll < 0.55:  # a reply in a recent thread
            thread_ts = rng.choice(threads[-30:])
        elif roll < 0.75:  # a new thread's parent
            thread_ts = ts
            threads.append(ts)
        count = rng.choice((1, 1, 2, 2, 3)) if rng.random() > 0.01 else rng.randint(8, 15)
        chosen = [int(rng.random() ** 1.3 * clause_count) for _ in range(count)]
        text = " ".join(CLAUSES[c] for c in chosen)
        if rng.random() < 0.1:
            text += f" ({rare_token(rng)})"
        messages.append(
            ArchivedMessage(
                team_id=TEAM,
                channel_id=channel,
                channel_type=channel_type,
                ts=ts,
                text=text,
                user_id=rng.choice(users),
                thread_ts=thread_ts,
                permalink=f"https://bench.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            )
        )
        parts.append(chosen)
    return messages, parts


CLAUSES: list[str] = []
QUESTION_OPENERS = ["what happened with", "who knows about", "any update on", "why did we", ""]
STOP = set("the a an and or of to in on for with is was are we i it at by be".split())


def make_queries(
    rng: random.Random, messages: list[ArchivedMessage], n: int
) -> list[tuple[str, SearchFilters, Audience]]:
    """n questions built from words of random messages, each with a channel filter and the
    audience of an answer posted in a random channel."""
    channels = sorted({m.channel_id for m in messages})
    queries = []
    while len(queries) < n:
        source = rng.choice(messages)
        words = [w for w in re.findall(r"[A-Za-z0-9-]+", source.text) if w.lower() not in STOP]
        if len(words) < 3:
            continue
        picked = rng.sample(words, min(len(words), rng.randint(2, 5)))
        question = f"{rng.choice(QUESTION_OPENERS)} {' '.join(picked)}".strip() + "?"
        asked_in = rng.choice(channels)
        filtered = source.channel_id if rng.random() < 0.7 else rng.choice(channels)
        queries.append(
            (
                question,
                SearchFilters(channels=frozenset({filtered})),
                Audience(frozenset({asked_in})),
            )
        )
    return queries


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000


async def timed(calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    for call in calls[:20]:  # warm-up
        await call()
    out = []
    for call in calls:
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


class PartTimes:
    """Time spent in each part of `Archive.search`, per query, by wrapping the archive's
    methods on this instance (a part called several times in one query is summed)."""

    PARTS = (
        ("embed", "archive", "_embed_query"),
        ("lexical", "lexical", "search"),
        ("dense", "archive", "_dense"),
        ("scope ids", "lexical", "scope_ids"),
        ("Chroma query", "collection", "query"),
        ("record fetch", "lexical", "get_many"),
    )

    def __init__(self, archive: Archive, team_id: str) -> None:
        self.totals: list[float] = []
        self.samples: list[dict[str, float]] = []
        owners = {
            "archive": archive,
            "lexical": archive._lexical,
            "collection": archive._collections[team_id],
        }
        for label, owner, name in self.PARTS:
            self._wrap(owners[owner], name, label)

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        async def timed_part(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                sample = self.samples[-1]
                sample[label] = sample.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed_part)

    def start(self) -> None:
        self.samples.append({})

    def stop(self, total: float) -> None:
        self.totals.append(total)

    def report(self) -> None:
        slow_cut = percentiles(self.totals)[1] / 1000
        slow = [s for s, t in zip(self.samples, self.totals, strict=True) if t >= slow_cut]
        t50, t95 = percentiles(self.totals)
        print(f"where the time goes ({len(self.totals)} hybrid queries, parts timed)")
        print(f"  {'whole search':12s} p50 {t50:6.1f} ms  p95 {t95:6.1f} ms")
        for label, _, _ in self.PARTS:
            values = [s.get(label, 0.0) for s in self.samples]
            p50, p95 = percentiles(values)
            in_slow = statistics.mean(s.get(label, 0.0) for s in slow) * 1000
            share = sum(1 for s in self.samples if label in s) / len(self.samples)
            print(
                f"  {label:12s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
                f"mean in slowest 5% {in_slow:6.1f} ms  (in {share:.0%} of queries)"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clauses", type=int, default=30_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the data dir")
    parser.add_argument("--keep", action="store_true", help="keep the rows in --database-url")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema for the tables")
    parser.add_argument(
        "--hybrid-only", action="store_true", help="leave out the raw Chroma queries (A/B runs)"
    )
    parser.add_argument("--data", type=Path, default=None, help="data dir (default: temporary)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    data = args.data or Path(tempfile.mkdtemp(prefix="lore-search-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite+aiosqlite:///{data / 'lore.db'}"
    embedder = OnnxEmbedder(MODEL_DIR)
    engine = bench_engine(url, args.schema)
    if args.schema:
        await create_schema(engine, args.schema)
    archive = await Archive.open_embedded(data / "chroma", embedder, engine)

    locomo = locomo_clauses()
    words = vocabulary(rng, locomo, 30_000)
    CLAUSES.extend(workplace_clauses(rng, max(0, args.clauses - len(locomo)), words) + locomo)
    rng.shuffle(CLAUSES)
    messages, parts = synthesise(rng, args.messages, len(CLAUSES))
    threads = len({(m.channel_id, m.thread_ts) for m in messages if m.thread_ts})
    print(
        f"{len(messages)} messages, {threads} threads, "
        f"{len({m.channel_id for m in messages})} channels, {len(CLAUSES)} clauses; data in {data}"
    )

    if await archive.count(TEAM) != len(messages):
        await archive.delete_team(TEAM)
        started = time.perf_counter()
        clause_vectors = embedder.embed_array(CLAUSES)
        embedded = time.perf_counter() - started
        step = 5_000
        for start in range(0, len(messages), step):
            chunk = range(start, min(start + step, len(messages)))
            vectors = [clause_vectors[parts[i]].mean(axis=0) for i in chunk]
            vectors = [(v / np.linalg.norm(v)).tolist() for v in vectors]
            await archive.add([messages[i] for i in chunk], vectors=vectors)
        print(
            f"ingest: {len(CLAUSES)} clauses embedded in {embedded:.0f} s, "
            f"archive written in {time.perf_counter() - started - embedded:.0f} s"
        )
    assert await archive.count(TEAM) == len(messages)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as connection:
            await connection.execute(text(f"ANALYZE {TABLE}"))

    queries = make_queries(rng, messages, args.queries)
    query_vectors = embedder.embed([q for q, _, _ in queries])
    collection = await archive._collection(TEAM, create=False)
    assert collection is not None
    wheres = [build_where(f, a) for _, f, a in queries]

    def hybrid(i: int) -> Callable[[], Awaitable[Any]]:
        question, filters, audience = queries[i]
        return lambda: archive.search(TEAM, question, audience=audience, filters=filters)

    def raw(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: collection.query(query_vectors[i], 10, wheres[i])

    def unfiltered(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: collection.query(query_vectors[i], 10, None)

    def lexical(i: int) -> Callable[[], Awaitable[Any]]:
        question, filters, audience = queries[i]
        return lambda: archive._lexical.search(
            TEAM, question, audience=audience, filters=filters, limit=64
        )

    def dense(i: int) -> Callable[[], Awaitable[Any]]:
        question, filters, audience = queries[i]
        return lambda: archive._dense(
            TEAM, lambda: archive._embed_query(question), audience, filters, 64
        )

    n = range(len(queries))
    gc.collect()
    gc.freeze()  # as start_lore does: the bench's own 100,000 messages are no garbage either
    print(f"measuring; load average {load_average()}", flush=True)
    hybrid_s = await timed([hybrid(i) for i in n])
    raw_s = [] if args.hybrid_only else await timed([raw(i) for i in n])
    unfiltered_s = [] if args.hybrid_only else await timed([unfiltered(i) for i in n])
    lexical_s = await timed([lexical(i) for i in n])
    dense_s = await timed([dense(i) for i in n])
    embed_s = await timed(
        [lambda q=q: asyncio.to_thread(embedder.embed, [q]) for q, _, _ in queries]
    )
    found = [len(await hybrid(i)()) for i in n]
    parts = PartTimes(archive, TEAM)
    for i in n:
        parts.start()
        started = time.perf_counter()
        await hybrid(i)()
        parts.stop(time.perf_counter() - started)
    if args.database_url and not args.keep:  # the SQL rows; the vectors stay for the next step
        await archive._lexical.delete_team(TEAM)
        if args.schema:
            await drop_schema(engine, args.schema)
    await archive.close()
    await engine.dispose()
    calls = [(query_vectors[i], wheres[i]) for i in n]

    print(f"measured; load average {load_average()}", flush=True)
    h50, h95 = percentiles(hybrid_s)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"{len(queries)} queries, channel filter + answer audience, lexical store {backend}")
    print(f"  hybrid Archive.search    p50 {h50:6.1f} ms  p95 {h95:6.1f} ms")
    if not args.hybrid_only:
        print_raw(h50, h95, raw_s, unfiltered_s, raw_in_process(data, embedder.name, calls))
    for name, samples in (("lexical", lexical_s), ("dense+embed", dense_s), ("embed", embed_s)):
        p50, p95 = percentiles(samples)
        print(f"  parts: {name:12s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    print(f"  results per query: mean {statistics.mean(found):.1f}")
    parts.report()


def raw_in_process(
    data: Path, embedder_name: str, calls: list[tuple[list[float], Any]]
) -> list[float]:
    """Seconds per raw query (vector, where) from an in-process PersistentClient."""
    import chromadb  # after the worker has exited: one process per persistent directory
    from chromadb.config import Settings

    client = chromadb.PersistentClient(str(data / "chroma"), Settings(anonymized_telemetry=False))
    raw_collection = client.get_collection(collection_name(TEAM, embedder_name))
    seconds = []
    for vector, where in calls[:20] + calls:
        start = time.perf_counter()
        raw_collection.query(query_embeddings=[vector], n_results=10, where=where)
        seconds.append(time.perf_counter() - start)
    return seconds[20:]


def print_raw(
    h50: float, h95: float, raw_s: list[float], unfiltered_s: list[float], inproc_s: list[float]
) -> None:
    r50, r95 = percentiles(raw_s)
    i50, i95 = percentiles(inproc_s)
    u50, u95 = percentiles(unfiltered_s)
    print(f"  raw Chroma query (worker) p50 {r50:5.1f} ms  p95 {r95:6.1f} ms")
    print(f"  raw Chroma in-process    p50 {i50:6.1f} ms  p95 {i95:6.1f} ms")
    print(f"  raw Chroma, no filter    p50 {u50:6.1f} ms  p95 {u95:6.1f} ms")
    print(f"  ratio hybrid / raw (worker):     p50 {h50 / r50:.2f}x  p95 {h95 / r95:.2f}x")
    print(f"  ratio hybrid / raw (in-process): p50 {h50 / i50:.2f}x  p95 {h95 / i95:.2f}x")
    print(f"  ratio hybrid / raw, no filter:   p50 {h50 / u50:.2f}x  p95 {h95 / u95:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
