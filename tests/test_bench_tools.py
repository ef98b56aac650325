"""The benchmarks' own tools: the timed fake model, /proc readings, JSON output and the chart."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest

from app.agent.tools import TOOLS
from bench.ack_latency import write_json
from bench.fake_model import TimedFake
from bench.procstat import cpu_seconds, rss_kib, tree, tree_rss_kib

ROOT = Path(__file__).resolve().parents[1]


async def test_fake_model_answers_a_turn_in_two_steps_and_times_each_request() -> None:
    fake = TimedFake(port=0, steps=2)
    await fake.start()
    try:
        client = fake.client(max_retries=0)
        question = "[2026-11-24 10:00 UTC, <@U0ALICE> in <#C0GENERAL> asks you]\n"
        question += "<@U0LORE> q-3-7 what do we know about the deploy freeze?"
        messages: list[dict[str, object]] = [{"role": "user", "content": question}]
        first = await client.messages.create(
            model="m",
            max_tokens=64,
            messages=messages,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
        )
        use = first.content[0]
        assert use.type == "tool_use"
        assert use.name == "search_conversations"
        assert use.input == {"query": "what do we know about the deploy freeze?"}
        messages += [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "none"}],
            },
        ]
        async with client.messages.stream(
            model="m",
            max_tokens=64,
            messages=messages,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "text"
        assert final.content[0].text == "Answer to q-3-7."
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{fake.base_url}/_bench/timings") as response,
        ):
            timings = await response.json()
        assert [t["tag"] for t in timings] == ["q-3-7", "q-3-7"]
        assert all(t["ms"] > 0 for t in timings)
        assert [t["step"] for t in timings] == [0, 1]
        assert [t["usage"]["input_tokens"] for t in timings] == [
            first.usage.input_tokens,
            final.usage.input_tokens,
        ]
        assert all(t["usage"]["cache_read_input_tokens"] == 0 for t in timings)  # none marked
        await client.close()
    finally:
        await fake.stop()


def test_process_tree_memory_and_cpu_include_children() -> None:
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=-1, stdout=-1, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert child.pid in tree(os.getpid())
        main, total = tree_rss_kib(os.getpid())
        processes = tree(os.getpid())
        readings = [rss_kib(p) for p in processes]
        assert main > 0 and rss_kib(child.pid) > 1024  # a started interpreter holds MiBs
        # a live process's RSS may move a page or two between two reads
        assert abs(main - readings[0]) <= 1024
        assert abs(total - sum(readings)) <= 1024 * len(processes)
        assert total >= main + rss_kib(child.pid) - 1024
        assert cpu_seconds(os.getpid()) >= cpu_seconds(os.getpid(), descendants=False) > 0
    finally:
        child.kill()
        child.wait()
    assert rss_kib(child.pid) == 0


def test_ack_json_out_keeps_one_run_per_concurrency(tmp_path: Path) -> None:
    out = tmp_path / "ack.json"

    def run(concurrency: int, lore_ms: float) -> None:
        args = argparse.Namespace(json_out=out, concurrency=concurrency, events=4, rounds=1)
        write_json(args, {"bare Bolt": [1.0, 2.0, 3.0, 4.0], "Lore": [lore_ms] * 4})

    run(50, 9.0)
    run(10, 5.0)
    run(50, 7.0)
    runs = json.loads(out.read_text())["runs"]
    assert [r["concurrency"] for r in runs] == [10, 50]
    assert runs[1]["servers"]["Lore"] == {"p50": 7.0, "p99": 7.0}
    assert runs[0]["servers"]["bare Bolt"]["p99"] == pytest.approx(3.97)


def test_chart_draws_both_panels(tmp_path: Path) -> None:
    turns = tmp_path / "turns.json"
    ack = tmp_path / "ack.json"
    png = tmp_path / "chart.png"
    ms = {"p50": 10.0, "p95": 20.0, "p99": 30.0}
    rows = [{"load": n, "overhead_ms": ms} for n in (1, 50)]
    turns.write_text(json.dumps({"steps": 2, "loads": rows}))
    servers = {"Lore": {"p50": 5.0, "p99": 9.0}, "bare Bolt": {"p50": 4.0, "p99": 8.0}}
    ack.write_text(json.dumps({"runs": [{"concurrency": 50, "servers": servers}]}))
    command = [sys.executable, str(ROOT / "bench" / "chart.py")]
    subprocess.run(
        [*command, f"--turns={turns}", f"--ack={ack}", f"--out={png}"], check=True, cwd=ROOT
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_turn_costs_sum_a_turns_steps_and_share_the_cache_reads() -> None:
    from bench.turn_overhead import Phase

    def usage(uncached: int, read: int, written: int) -> dict[str, int]:
        return {
            "input_tokens": uncached,
            "output_tokens": 10,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }

    phase = Phase(posted=2)
    phase.calls.update(["chat.startStream", "chat.stopStream", "conversations.replies"] * 2)
    phase.add_usage(
        [
            {"tag": "f-1-0", "step": 0, "usage": usage(0, 900, 100)},
            {"tag": "f-1-0", "step": 1, "usage": usage(0, 1000, 500)},
            {"tag": "f-1-1", "step": 0, "usage": usage(100, 0, 900)},
            {"tag": "q-1-0", "step": 0, "usage": usage(5, 5, 5)},  # another round's
        ],
        {"f-1-0", "f-1-1"},
    )
    row = phase.row({"Lore": 0.1})
    assert row["tokens_per_turn"] == {
        "input": 50.0,
        "output": 15.0,
        "cache_read": 950.0,
        "cache_creation": 750.0,
    }
    assert row["cache_read_share"] == round(1900 / 3500, 3)
    assert row["tokens_per_step"]["1"]["cache_read"] == 1000.0
    assert row["web_api_calls_per_turn"]["conversations.replies"] == 1.0
    assert row["cpu_ms_per_turn"] == {"Lore": 50.0}


async def test_fake_model_teaches_in_two_steps_and_answers_529_while_overloaded() -> None:
    fake = TimedFake(port=0, steps=2)
    await fake.start()
    try:
        client = fake.client(max_retries=0)
        history = '<message from="<@U0BOB>">\n<@U0LORE> t-1-1 please remember the old fact\n'
        question = f"{history}</message>\n\n[2026-12-05 10:00 UTC, <@U0ALICE> asks you]\n"
        question += "<@U0LORE> t-2-5 please remember this for the team: the freeze is settled"
        messages: list[Any] = [{"role": "user", "content": question}]
        first = await client.messages.create(
            model="m",
            max_tokens=64,
            messages=messages,
            tools=TOOLS,  # type: ignore[arg-type]
        )
        use = first.content[0]
        assert use.type == "tool_use"
        assert (use.name, use.input) == ("memory_insert", {"label": "org", "text": "fact t-2-5"})
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}
                ],
            }
        )
        results = {"type": "tool_result", "tool_use_id": use.id, "content": "over the limit"}
        failed: list[Any] = [
            *messages,
            {"role": "user", "content": [{**results, "is_error": True}]},
        ]
        saved: list[Any] = [*messages, {"role": "user", "content": [results]}]
        refused = await client.messages.create(
            model="m",
            max_tokens=64,
            messages=failed,
            tools=TOOLS,  # type: ignore[arg-type]
        )
        assert refused.content[0].type == "text"
        assert refused.content[0].text == "Not saved t-2-5."

        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{fake.base_url}/_bench/overload", json={"seconds": 60}
            ) as response:
                assert response.status == 200
            with pytest.raises(anthropic.OverloadedError):
                await client.messages.create(
                    model="m",
                    max_tokens=64,
                    messages=saved,
                    tools=TOOLS,  # type: ignore[arg-type]
                )
            async with session.get(f"{fake.base_url}/_bench/timings") as response:
                timings = await response.json()
        assert [(t["tag"], t["tool"], t["status"]) for t in timings] == [
            ("t-2-5", "memory_insert", 200),
            ("t-2-5", None, 200),
            ("t-2-5", None, 529),
        ]
        await client.close()
    finally:
        await fake.stop()


def test_soak_accounting_sorts_acknowledged_messages_and_taught_lines() -> None:
    from bench.soak_checks import acknowledged, check_archive, check_memory

    def new(ts: str, user: str = "U0ALICE") -> dict[str, object]:
        return {"type": "message", "channel": "C1", "ts": ts, "user": user, "text": ts}

    def changed(ts: str, text: str) -> dict[str, object]:
        message = {"ts": ts, "user": "U0ALICE", "text": text}
        return {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "message": message,
        }

    def deleted(ts: str) -> dict[str, object]:
        old = {"ts": ts, "user": "U0ALICE"}
        event = {"type": "message", "subtype": "message_deleted", "channel": "C1"}
        return {**event, "deleted_ts": ts, "previous_message": old}

    acked = acknowledged(
        [
            (new("1"), True),
            (new("2"), True),
            (changed("2", "two, edited"), True),
            (new("3"), True),
            (deleted("3"), True),
            (new("4"), False),  # never acknowledged: Lore owes nothing for it
            (new("5"), True),
            (changed("5", "five, edited"), True),
            (changed("5", "five, edited again"), False),
            (new("6", user="U0LORE"), True),  # the bot's own message: left out
            (new("7"), True),
            (deleted("7"), False),  # deleted in Slack, Lore never told: not missing either way
            ({"type": "app_mention", "channel": "C1", "ts": "1"}, True),
        ],
        bot_user="U0LORE",
    )
    assert acked.posted == {("C1", t) for t in ("1", "2", "3", "5", "7")}
    assert acked.deleted == {("C1", "3")}
    assert acked.edited == {("C1", "2"): "two, edited", ("C1", "5"): "five, edited"}
    assert acked.unacknowledged == 3

    records = {("C1", "2"): "2", ("C1", "3"): "3", ("C1", "5"): "five, edited"}
    now = {("C1", "1"): "1", ("C1", "2"): "two, edited", ("C1", "5"): "five, edited again"}
    now |= {("C1", "3"): None, ("C1", "7"): None}
    check = check_archive(acked, records, {("C1", "2")}, now)
    assert check.expected == 4
    assert check.missing == [("C1", "1")]
    assert check.stale == [("C1", "2")]  # its acknowledged edit is the text Slack shows
    assert check.deleted_but_kept == [("C1", "3")]
    assert check.vectors_missing == [("C1", "5")]

    block = "persona line\nfact t-1-1\nfact t-1-2\nfact t-1-2\nfact t-9-9\nfact t-1-5"
    tags = ("t-1-1", "t-1-2", "t-1-3", "t-1-4", "t-1-5", "t-1-6")
    memory = check_memory(
        block,
        served=set(tags),
        confirmed={"t-1-1", "t-1-2", "t-1-3"},
        refused={"t-1-4"},
        line_of={tag: f"fact {tag}" for tag in tags},
    )
    assert memory.applied_once == 2  # t-1-1, and t-1-5 kept though its turn failed later
    assert memory.doubled == ["t-1-2"]
    assert memory.lost == ["t-1-3"]
    assert memory.not_applied == ["t-1-6"]  # its turn failed before the edit: no promise
    assert memory.refused == ["t-1-4"]
    assert memory.strays == ["fact t-9-9"]
