"""Search quality on LoCoMo dev, measured through the CLI exactly as an admin would use it.

Run: .venv/bin/python bench/locomo.py [--workdir DIR] [--threads N] [--database-url URL]

Each LoCoMo sample becomes a Slack workspace export (one workspace per sample; one session = one
thread in #general posted at the session's date and time (UTC), its first turn the parent, turns
5 s apart; one speaker = one user with an opaque id; text = the turn's text plus
" [shares: {blip_caption}]" when it shares an image). The exports are imported with
`python -m app import-export`, and every question of categories 1-4 is asked through
`python -m app search --queries FILE --json --k 20` on a fresh LORE_DATA_DIR, with the record
and lexical index in SQLite there, or with `--database-url` in that PostgreSQL database (which
should hold no other rows of the LoCoMo workspaces).

hit@k: share of questions with at least one evidence turn among the top k results; recall@k: mean
share of a question's evidence turns among them (definitions of BASELINES.md). A result counts
by the message it names (channel, ts). Evidence ids are read as written, except that "D8:6; D9:17"
is split and "D:11:26" read as D11:26; ids naming no turn are dropped, and questions left with no
evidence (2 of 762) are not scored, which gives BASELINES.md's 760 questions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LOCOMO = SHARED / "bench-data" / "locomo-dev.json"
MODEL_DIR = SHARED / "models" / "all-MiniLM-L6-v2"
KS = (5, 10, 20)
# The search settings' defaults (memory/ranking.py) were chosen on these two conversations with
# bench/tune_ranking.py; the figures that count are those of the other three.
TUNING = frozenset({"conv-26", "conv-30"})
CHANNEL_ID, CHANNEL_NAME = "C0GENERAL", "general"
TURN_GAP = 5  # seconds between turns of a session

# Reference figures from /work/shared/bench-data/BASELINES.md (760 questions, categories 1-4,
# one document per turn with text "Speaker: text", the question as the query):
# method -> {k: (hit@k, recall@k)}.
BASELINES: dict[str, dict[int, tuple[float, float]]] = {
    "BM25 (FTS5, BASELINES.md)": {5: (0.529, 0.476), 10: (0.632, 0.566), 20: (0.718, 0.651)},
    "dense MiniLM (BASELINES.md)": {5: (0.463, 0.407), 10: (0.572, 0.510), 20: (0.674, 0.603)},
    "hybrid RRF k=60 (BASELINES.md)": {5: (0.576, 0.510), 10: (0.672, 0.607), 20: (0.800, 0.726)},
}


@dataclass(frozen=True)
class Question:
    id: str
    query: str
    category: int
    evidence: frozenset[str]  # message keys "channel:ts"


@dataclass(frozen=True)
class Workspace:
    sample: str
    team: str
    export: Path
    questions: list[Question]


def session_start(text: str) -> datetime:
    """ "1:56 pm on 8 May, 2023" as a UTC datetime."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def sessions(conversation: dict[str, Any]) -> list[tuple[datetime, list[dict[str, Any]]]]:
    """(start, turns) of every non-empty session, in session order."""
    numbers = sorted(int(k.split("_")[1]) for k in conversation if re.fullmatch(r"session_\d+", k))
    found = []
    for n in numbers:
        turns = conversation[f"session_{n}"]
        if turns:
            found.append((session_start(conversation[f"session_{n}_date_time"]), turns))
    return found


def turn_text(turn: dict[str, Any]) -> str:
    caption = turn.get("blip_caption")
    return turn["text"] + (f" [shares: {caption}]" if caption else "")


def write_export(sample: dict[str, Any], folder: Path) -> dict[str, str]:
    """Write the sample as a Slack export into folder; returns dia_id -> message key."""
    conversation = sample["conversation"]
    speakers = [conversation["speaker_a"], conversation["speaker_b"]]
    user_ids = {name: f"U{i + 1:04d}" for i, name in enumerate(speakers)}
    days: dict[str, list[dict[str, Any]]] = defaultdict(list)
    keys: dict[str, str] = {}
    for start, turns in sessions(conversation):
        for name in {t["speaker"] for t in turns} - user_ids.keys():
            user_ids[name] = f"U{len(user_ids) + 1:04d}"
        parent_ts = f"{int(start.timestamp())}.000100"
        replies: list[dict[str, str]] = []
        for i, turn in enumerate(turns):
            when = int(start.timestamp()) + i * TURN_GAP
            ts = f"{when}.000100"
            message: dict[str, Any] = {
                "type": "message",
                "user": user_ids[turn["speaker"]],
                "text": turn_text(turn),
                "ts": ts,
                "thread_ts": parent_ts,
            }
            if i == 0:
                message["reply_count"] = len(turns) - 1
                message["replies"] = replies
            else:
                message["parent_user_id"] = user_ids[turns[0]["speaker"]]
                replies.append({"user": message["user"], "ts": ts})
            day = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")
            days[day].append(message)
            keys[turn["dia_id"]] = f"{CHANNEL_ID}:{ts}"
    if len(set(keys.values())) != len(keys):
        raise ValueError(f"two turns of {sample['sample_id']} share a ts")
    folder.mkdir(parents=True, exist_ok=True)
    users = [{"id": uid, "name": name.lower(), "real_name": name} for name, uid in user_ids.items()]
    (folder / "users.json").write_text(json.dumps(users, indent=1))
    channel = {"id": CHANNEL_ID, "name": CHANNEL_NAME, "members": list(user_ids.values())}
    (folder / "channels.json").write_text(json.dumps([channel], indent=1))
    (folder / CHANNEL_NAME).mkdir(exist_ok=True)
    for day, messages in days.items():
        (folder / CHANNEL_NAME / f"{day}.json").write_text(json.dumps(messages, indent=1))
    return keys


def evidence_ids(raw: list[str]) -> list[str]:
    """Evidence ids as written, "D8:6; D9:17" split and "D:11:26" read as "D11:26"."""
    ids = []
    for item in raw:
        for part in re.split(r"[;,\s]+", item):
            match = re.fullmatch(r"D:?(\d+):(\d+)", part)
            if match:
                ids.append(f"D{match[1]}:{match[2]}")
    return ids


def build(samples: list[dict[str, Any]], workdir: Path) -> list[Workspace]:
    """Exports and scored questions of every sample."""
    spaces = []
    for sample in samples:
        name = sample["sample_id"]
        team = "T" + re.sub(r"[^A-Z0-9]", "", name.upper())
        keys = write_export(sample, workdir / "exports" / name)
        questions = []
        for n, qa in enumerate(sample["qa"]):
            if qa.get("category") not in (1, 2, 3, 4):
                continue
            evidence = frozenset(keys[i] for i in evidence_ids(qa.get("evidence", [])) if i in keys)
            if evidence:
                questions.append(Question(f"{name}#{n}", qa["question"], qa["category"], evidence))
        spaces.append(Workspace(name, team, workdir / "exports" / name, questions))
    return spaces


def cli(args: list[str], env: dict[str, str], capture: bool = False) -> str:
    """Run `python -m app ARGS`; stderr (progress) passes through."""
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"`python -m app {' '.join(args[:2])} ...` exited with {done.returncode}")
    return done.stdout or ""


def ask(space: Workspace, workdir: Path, env: dict[str, str], k: int) -> dict[str, list[str]]:
    """Every question of the workspace through `search --queries`; id -> result keys, best first."""
    queries = workdir / f"{space.team}.queries.jsonl"
    queries.write_text(
        "".join(json.dumps({"id": q.id, "query": q.query}) + "\n" for q in space.questions)
    )
    out = cli(
        ["search", "--team", space.team, "--queries", str(queries), "--json", "--k", str(k)],
        env,
        capture=True,
    )
    answers: dict[str, list[str]] = {}
    for line in out.splitlines():
        item = json.loads(line)
        answers[item["id"]] = [f"{r['channel']}:{r['ts']}" for r in item["results"]]
    missing = [q.id for q in space.questions if q.id not in answers]
    if missing:
        raise SystemExit(f"search gave no answer for {len(missing)} questions, e.g. {missing[0]}")
    return answers


def scores(
    questions: list[Question], answers: dict[str, list[str]]
) -> dict[int, tuple[float, float]]:
    """k -> (hit@k, recall@k) over questions."""
    table = {}
    for k in KS:
        found = [len(q.evidence.intersection(answers[q.id][:k])) for q in questions]
        hit = sum(1 for f in found if f) / len(questions)
        recall = sum(f / len(q.evidence) for f, q in zip(found, questions, strict=True)) / len(
            questions
        )
        table[k] = (hit, recall)
    return table


def row(label: str, figures: dict[int, tuple[float, float]], width: int = 34) -> str:
    cells = "".join(f"{figures[k][0]:>8.3f}{figures[k][1]:>11.3f}" for k in KS)
    return f"{label:<{width}}{cells}"


def report(spaces: list[Workspace], answers: dict[str, list[str]]) -> str:
    questions = [q for space in spaces for q in space.questions]
    held_out = [q for space in spaces if space.sample not in TUNING for q in space.questions]
    tuning = [q for space in spaces if space.sample in TUNING for q in space.questions]
    header = f"{'':<34}" + "".join(f"{f'hit@{k}':>8}{f'recall@{k}':>11}" for k in KS)
    lines = [
        f"LoCoMo dev: {len(questions)} questions of categories 1-4 in {len(spaces)} workspaces",
        header,
    ]
    lines += [row(label, figures) for label, figures in BASELINES.items()]
    lines.append(row("Lore `app search` (this run)", scores(questions, answers)))
    if held_out and tuning:
        lines.append(row(f"  held out ({len(held_out)} questions)", scores(held_out, answers)))
        lines.append(row(f"  tuning set ({len(tuning)} questions)", scores(tuning, answers)))
    lines += ["", "Lore `app search` by category (1 = multi-hop; see bench-data/README.md)", header]
    for category in (1, 2, 3, 4):
        subset = [q for q in questions if q.category == category]
        if subset:
            lines.append(
                row(f"category {category} ({len(subset)} questions)", scores(subset, answers))
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=LOCOMO)
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="LORE_EMBEDDING_MODEL_DIR")
    parser.add_argument("--workdir", type=Path, help="keep exports and data here (default: temp)")
    parser.add_argument("--threads", type=int, help="LORE_EMBEDDING_THREADS for the import")
    parser.add_argument("--database-url", default="", help="DATABASE_URL (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lore-locomo-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LORE_DATA_DIR": str(workdir / "data"),
            "LORE_EMBEDDING_MODEL_DIR": str(args.model),
            "DATABASE_URL": args.database_url,
            "CHROMA_URL": "",
            "REDIS_URL": "",
            "LORE_LOG_LEVEL": "WARNING",
        }
        if args.threads:
            env["LORE_EMBEDDING_THREADS"] = str(args.threads)
        spaces = build(json.loads(args.data.read_text()), workdir)
        started = time.perf_counter()
        for space in spaces:
            print(
                cli(
                    ["import-export", str(space.export), "--team", space.team], env, capture=True
                ).strip()
            )
        imported = time.perf_counter() - started
        answers: dict[str, list[str]] = {}
        started = time.perf_counter()
        for space in spaces:
            answers.update(ask(space, workdir, env, max(KS)))
        searched = time.perf_counter() - started
        questions = [q for space in spaces for q in space.questions]
        print()
        print(report(spaces, answers))
        print(
            f"\nimport {imported:.0f} s for {len(spaces)} workspaces; "
            f"search {searched:.0f} s for {len(questions)} questions (incl. start-up)"
        )


if __name__ == "__main__":
    main()
