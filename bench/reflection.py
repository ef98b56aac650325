"""Reflection on LoCoMo dev: the model tokens it spends per 1,000 archived messages, its wall
time, and (with ANTHROPIC_API_KEY) whether its notes make answers better.

Run: .venv/bin/python bench/reflection.py [--workdir DIR] [--questions N]

Each LoCoMo sample is imported as a workspace exactly as bench/locomo.py does (one session = one
thread in #general), with `python -m app import-export`; that import's wall time is the baseline
the reflection's is compared with, measured in the same run. Then one reflection pass per
workspace reads every thread (all are long quiet) in batches, as the worker does in `serve`.

- Without ANTHROPIC_API_KEY the model is tests/fake_anthropic.py in this process: it answers
  every reflection with one `note_add` per thread (citing its first two messages), and its usage
  fields count what was sent (each prompt block's JSON characters / 4; output: the reply's).
  So the tokens are the counts of what reflection sends, not a real tokenizer's, and the
  answer-accuracy part is skipped (the run says so).
- With ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL if set) the real model reflects
  (LORE_REFLECT_MODEL, default claude-haiku-4-5), its usage fields are summed, and then up to
  `--questions` questions per workspace (categories 1-4) are answered by that model twice:
  from the archive's top 10 messages alone, and from those plus the top 5 notes. The same model
  judges each answer against the gold answer (CORRECT / WRONG); accuracy is reported both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.reflection import Reflection, ReflectionLimits
from app.reflection.budget import BudgetStatus
from bench.locomo import LOCOMO, MODEL_DIR, Workspace, build, cli
from memory.archive import Archive
from memory.audience import Audience
from memory.blocks import MemoryBlocks
from memory.db import create_tables, make_engine
from memory.embeddings import load_embedder
from memory.locks import LocalLeases, LocalLocks
from memory.messages import SearchFilters
from memory.note_search import NoteSearch
from memory.notes import Notes
from memory.reflection_state import ReflectionState
from tests.fake_anthropic import FakeAnthropic, reply, tool_use

THREAD = re.compile(r'<thread channel="([^"]+)"[^>]*>(.*?)</thread>', re.S)
MESSAGE_TS = re.compile(r'<message ts="([0-9.]+)"')
DEFAULT_MODEL = "claude-haiku-4-5"


@dataclass
class Spend:
    """What reflection's model calls came to (the reflection's observer)."""

    calls: int = 0
    failed: int = 0
    input: int = 0
    cache_read: int = 0
    cache_written: int = 0
    output: int = 0
    per_team: dict[str, BudgetStatus] = field(default_factory=dict)

    def reflection_call(self, outcome: str, usage: anthropic.types.Usage | None) -> None:
        self.calls += 1
        if usage is None:
            self.failed += 1
            return
        self.input += usage.input_tokens
        self.cache_read += usage.cache_read_input_tokens or 0
        self.cache_written += usage.cache_creation_input_tokens or 0
        self.output += usage.output_tokens

    def reflection_budget(self, team_id: str, status: BudgetStatus) -> None:
        self.per_team[team_id] = status

    @property
    def total(self) -> int:
        return self.input + self.cache_read + self.cache_written + self.output


def fake_reflection(body: dict[str, Any]) -> Any:
    """One note per thread of the request, citing its first two messages."""
    said = "\n".join(
        m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
        for m in body["messages"]
    )
    calls = []
    for channel, inside in THREAD.findall(said):
        stamps = MESSAGE_TS.findall(inside)[:2]
        if stamps:
            sources = [{"channel": channel, "ts": ts} for ts in stamps]
            calls.append(
                tool_use(
                    "note_add",
                    {"text": f"What the thread of {stamps[0]} settled.", "sources": sources},
                )
            )
    return reply(*calls) if calls else reply()


async def reflect(
    workdir: Path, spaces: list[Workspace], llm: anthropic.AsyncAnthropic, model: str
) -> tuple[Spend, float, int, int, Any]:
    """One reflection pass per workspace: spend, wall seconds, messages archived, notes."""
    engine = make_engine(f"sqlite+aiosqlite:///{workdir / 'data' / 'lore.db'}")
    await create_tables(engine)
    embedder = load_embedder(MODEL_DIR, workdir / "data" / "models")
    archive = await Archive.open_embedded(workdir / "data" / "chroma", embedder, engine)
    notes = Notes(engine, embedder)
    archive.find_notes(NoteSearch(notes, embedder))  # as `serve` does: search finds notes too
    spend = Spend()
    reflection = Reflection(
        llm=llm,
        limits=ReflectionLimits(model=model, after=60.0, tokens_per_day=10**12),
        state=ReflectionState(engine),
        archive=archive,
        blocks=MemoryBlocks(engine, LocalLocks()),
        notes=notes,
        leases=LocalLeases(),
        observer=spend,
    )
    archived = sum([await archive.count(space.team) for space in spaces])
    started = time.perf_counter()
    for space in spaces:
        await reflection.reflect_team(space.team)
    seconds = time.perf_counter() - started
    written = sum([len(await notes.active(space.team)) for space in spaces])
    return spend, seconds, archived, written, (engine, archive, notes, embedder)


async def accuracy(
    llm: anthropic.AsyncAnthropic,
    model: str,
    spaces: list[Workspace],
    samples: dict[str, dict[str, Any]],
    stores: Any,
    per_space: int,
) -> tuple[int, int, int]:
    """Questions asked, and correct answers without and with notes."""
    _, archive, notes, embedder = stores
    search = NoteSearch(notes, embedder)
    everyone = Audience.everyone()
    asked = plain = noted = 0
    for space in spaces:
        gold = {
            f"{space.sample}#{n}": qa.get("answer")
            for n, qa in enumerate(samples[space.sample]["qa"])
        }
        questions = [q for q in space.questions if gold.get(q.id) is not None][:per_space]
        for question in questions:
            found_hits = await archive.search(
                space.team, question.query, audience=everyone, limit=20
            )
            hits = [h for h in found_hits if h.note is None][:10]  # messages only
            found = await search.search(
                space.team, question.query, audience=everyone, filters=SearchFilters(), limit=5
            )
            messages = "\n".join(
                f"- {h.message.user_name or h.message.user_id}: {h.message.text}" for h in hits
            )
            facts = "\n".join(f"- {note.text}" for note, _ in found)
            answer_plain = await _answer(llm, model, question.query, messages, "")
            answer_noted = await _answer(llm, model, question.query, messages, facts)
            truth = str(gold[question.id])
            asked += 1
            plain += await _judge(llm, model, question.query, truth, answer_plain)
            noted += await _judge(llm, model, question.query, truth, answer_noted)
    return asked, plain, noted


async def _answer(
    llm: anthropic.AsyncAnthropic, model: str, question: str, messages: str, facts: str
) -> str:
    context = f"Messages:\n{messages}"
    if facts:
        context += f"\n\nNotes learned from earlier conversations:\n{facts}"
    message = await llm.messages.create(
        model=model,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": f"{context}\n\nAnswer in a few words from the above: {question}",
            }
        ],
    )
    return "".join(b.text for b in message.content if b.type == "text")


async def _judge(
    llm: anthropic.AsyncAnthropic, model: str, question: str, gold: str, answer: str
) -> int:
    message = await llm.messages.create(
        model=model,
        max_tokens=5,
        messages=[
            {
                "role": "user",
                "content": (
                    f"Question: {question}\nGold answer: {gold}\nGiven answer: {answer}\n"
                    "Does the given answer say what the gold answer says? "
                    "Reply CORRECT or WRONG only."
                ),
            }
        ],
    )
    verdict = "".join(b.text for b in message.content if b.type == "text")
    return int("CORRECT" in verdict.upper())


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


async def run(args: argparse.Namespace, workdir: Path) -> None:
    env = {
        **os.environ,
        "LORE_DATA_DIR": str(workdir / "data"),
        "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
        "DATABASE_URL": "",
        "CHROMA_URL": "",
        "REDIS_URL": "",
        "LORE_LOG_LEVEL": "WARNING",
    }
    samples = json.loads(args.data.read_text())
    spaces = build(samples, workdir)
    load_before = load_average()
    started = time.perf_counter()
    for space in spaces:
        cli(["import-export", str(space.export), "--team", space.team], env, capture=True)
    imported = time.perf_counter() - started
    key = os.environ.get("ANTHROPIC_API_KEY")
    model = os.environ.get("LORE_REFLECT_MODEL") or DEFAULT_MODEL
    fake: FakeAnthropic | None = None
    if key:
        llm = anthropic.AsyncAnthropic(base_url=os.environ.get("ANTHROPIC_BASE_URL") or None)
    else:
        fake = FakeAnthropic()
        await fake.start()
        fake.respond_to_model(model, fake_reflection)
        llm = fake.client(max_retries=0)
    try:
        spend, seconds, archived, written, stores = await reflect(workdir, spaces, llm, model)
        threads = sum(
            len({m["thread_ts"] for m in _day_messages(space.export)}) for space in spaces
        )
        per_k = 1000 / max(1, archived)
        source = "the real model's usage" if key else "the fake model's counts of what is sent"
        print(f"LoCoMo dev: {len(spaces)} workspaces, {archived} messages, {threads} threads")
        print(
            f"model {model}; tokens from {source}; load average before {load_before}, "
            f"after {load_average()}"
        )
        print()
        print("| per 1,000 archived messages | value |")
        print("|---|---|")
        print(f"| model calls | {spend.calls * per_k:.1f} |")
        print(f"| input tokens (uncached) | {spend.input * per_k:,.0f} |")
        print(f"| cache-read input tokens | {spend.cache_read * per_k:,.0f} |")
        print(f"| cache-written input tokens | {spend.cache_written * per_k:,.0f} |")
        print(f"| output tokens | {spend.output * per_k:,.0f} |")
        print(f"| all tokens (what the budget counts) | {spend.total * per_k:,.0f} |")
        print(f"| notes written | {written * per_k:.1f} |")
        print()
        print(
            f"reflection wall time {seconds:.1f} s; import of the same workspaces "
            f"{imported:.1f} s (baseline); ratio {seconds / imported:.2f}"
        )
        if spend.failed:
            print(f"{spend.failed} reflection calls failed")
        await stores[1].close()
        if not key:
            print(
                "\nAnswer accuracy with and without notes: SKIPPED (no ANTHROPIC_API_KEY set; "
                "the fake model cannot answer or judge)."
            )
            return
        asked, plain, noted = await accuracy(
            llm, model, spaces, {s["sample_id"]: s for s in samples}, stores, args.questions
        )
        print(
            f"\nanswer accuracy over {asked} questions, judged by {model}: "
            f"without notes {plain / asked:.3f}, with notes {noted / asked:.3f}"
        )
    finally:
        await llm.close()
        if fake is not None:
            await fake.stop()


def _day_messages(export: Path) -> list[dict[str, Any]]:
    return [m for day in sorted(export.glob("*/*.json")) for m in json.loads(day.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=LOCOMO)
    parser.add_argument("--workdir", type=Path, help="keep exports and data here (default: temp)")
    parser.add_argument("--questions", type=int, default=40, help="per workspace, with a key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lore-reflection-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args, workdir))


if __name__ == "__main__":
    main()
