"""GET /metrics of a running Lore: deliveries, duplicates, turns, timings, queue, memory."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import Lore, start_lore
from app.metrics import LoreMetrics
from emulator import SlackEmulator
from memory.blocks import Block, EditCounts, MemoryBlocks, MemoryScope
from memory.edits import EditError, Insert, Replace
from memory.locks import LocalLocks
from tests.conftest import new_team
from tests.fake_anthropic import FakeAnthropic, error, reply, text, tool_use
from tests.harness import eventually, lore_settings, settled

BOT = "<@U0LORE>"
TEAM = "T0LORE"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    """The sum of one sample name over all its label values."""
    return sum(v for (sample, _), v in samples.items() if sample == name)


async def get_metrics(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics", headers=headers or {}) as response:
            return response.status, await response.text()


async def scrape(lore: Lore) -> Samples:
    status, body = await get_metrics(lore.url)
    assert status == 200, body
    return parse(body)


def events_for(emulator: SlackEmulator, ts: str) -> dict[str, str]:
    """Event type -> event id of the deliveries of one message."""
    return {
        body["event"]["type"]: body["event_id"]
        for body in emulator.events
        if body["event"].get("ts") == ts
    }


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    await eventually(check, within=20)


async def test_answered_mention_and_duplicates_are_counted(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    before = await scrape(lore)
    fake_llm.script(
        reply(tool_use("memory_insert", {"label": "org", "text": "Deploys freeze on Fridays."})),
        reply(text("Noted: no deploys on Fridays.")),
    )
    posted = await emulator.post_message(
        "U0ALICE", "C0GENERAL", f"{BOT} remember: deploys freeze on Fridays"
    )
    await emulator.wait_for_reply("C0GENERAL", posted["ts"], timeout=20)
    await emulator.drain()

    async def turn_counted() -> bool:
        return value(await scrape(lore), "lore_turns_total", outcome="answered") > value(
            before, "lore_turns_total", outcome="answered"
        )

    await until(turn_counted)
    ids = events_for(emulator, posted["ts"])
    assert set(ids) == {"message", "app_mention"}
    mention = {
        "type": "app_mention",
        "user": "U0ALICE",
        "text": f"{BOT} remember: deploys freeze on Fridays",
        "ts": posted["ts"],
        "channel": "C0GENERAL",
        "event_ts": posted["ts"],
    }
    retried = await emulator.deliver_event(
        mention, event_id=ids["app_mention"], retry_num=1, retry_reason="http_timeout"
    )
    assert retried == 200
    await settled(emulator, lore)  # answered at once; Bolt counts it as it handles it
    after = await scrape(lore)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("lore_events_received_total", type="app_mention") == 2
    assert delta("lore_events_received_total", type="message") >= 1
    # one of the message/app_mention pair, and the retry
    assert (
        total(after, "lore_events_duplicate_total") - total(before, "lore_events_duplicate_total")
        == 2
    )
    assert delta("lore_events_duplicate_total", type="app_mention") >= 1
    assert delta("lore_turns_total", outcome="answered") == 1
    assert delta("lore_turns_total", outcome="failed") == 0
    assert delta("lore_turn_seconds_count") == 1
    assert delta("lore_turn_model_seconds_count") == 1
    model_seconds = delta("lore_turn_model_seconds_sum")
    assert 0 < model_seconds <= delta("lore_turn_seconds_sum")
    assert delta("lore_memory_edits_total", operation="insert") == 1
    assert ("lore_turn_queue_depth", frozenset()) in after
    assert not [name for name, _ in after if name.endswith("_created")]
    assert ("lore_archive_pending", frozenset()) in after
    # counted when the workspace was first seen, then at most once a minute
    archived = value(after, "lore_archive_messages", team=TEAM)
    assert ("lore_archive_messages", frozenset({("team", TEAM)})) in after
    assert 0 <= archived <= await lore.stores.archive.count(TEAM)


async def test_failed_turn_is_counted_with_its_model_time(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    before = await scrape(lore)
    fake_llm.script(error(529, "overloaded_error", "Overloaded"))
    posted = await emulator.post_message("U0BOB", "C0GENERAL", f"{BOT} are you there?")
    await emulator.wait_for_reply("C0GENERAL", posted["ts"], timeout=20)

    async def failed() -> bool:
        return value(await scrape(lore), "lore_turns_total", outcome="failed") > value(
            before, "lore_turns_total", outcome="failed"
        )

    await until(failed)
    after = await scrape(lore)
    assert value(after, "lore_turns_total", outcome="answered") == value(
        before, "lore_turns_total", outcome="answered"
    )
    assert value(after, "lore_turn_model_seconds_count") == 1 + value(
        before, "lore_turn_model_seconds_count"
    )


async def test_queue_depth_is_read_at_scrape_time(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    release = asyncio.Event()

    async def held_reply(_request: dict[str, Any]) -> Any:
        await release.wait()
        return reply(text("Here you are."))

    fake_llm.respond_with(held_reply)
    first = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} first question")
    await fake_llm.wait_for_requests(1, timeout=20)
    await emulator.post_message(
        "U0BOB", "C0GENERAL", f"{BOT} second question", thread_ts=first["ts"]
    )

    async def two_in_queue() -> bool:
        return lore.services.turns.depth == 2

    await until(two_in_queue)
    assert value(await scrape(lore), "lore_turn_queue_depth") == 2
    release.set()
    await emulator.wait_for_reply("C0GENERAL", first["ts"], count=2, timeout=20)

    async def empty() -> bool:
        return value(await scrape(lore), "lore_turn_queue_depth") == 0

    await until(empty)


class ReadsThenWaits(MemoryBlocks):
    """A writer whose lock has expired: after reading the newest version it lets `meanwhile`
    run (another process's edit) before writing its own version."""

    meanwhile: Callable[[], Awaitable[object]] | None = None

    async def _head(self, session: Any, team_id: str, label: str) -> Block | None:
        head = await super()._head(session, team_id, label)
        if self.meanwhile is not None:
            other, self.meanwhile = self.meanwhile, None
            await other()
        return head


EVERYTHING = MemoryScope.everything()


async def test_memory_edit_conflict_and_refusal_are_counted(postgres_engine: AsyncEngine) -> None:
    team = new_team()
    slow = ReadsThenWaits(postgres_engine, LocalLocks())
    other = MemoryBlocks(postgres_engine, LocalLocks())
    metrics = LoreMetrics()
    metrics.watch(turns=_Idle(), ingest=_Idle(), blocks=slow, archive=_NoArchive())
    await slow.current(team, EVERYTHING)
    slow.meanwhile = lambda: other.edit(
        team, "org", Insert("Written by the other process."), scope=EVERYTHING
    )
    result = await slow.edit(team, "org", Insert("Written by the slow one."), scope=EVERYTHING)
    assert result.block.version == 3  # re-applied on top of the other's version 2
    assert result.block.value.splitlines() == [
        "Written by the other process.",
        "Written by the slow one.",
    ]
    with pytest.raises(EditError):
        await slow.edit(team, "org", Replace("not there", "x"), scope=EVERYTHING)
    body, _content_type = await metrics.exposition("")
    samples = parse(body.decode())
    assert value(samples, "lore_memory_edit_conflicts_total") == 1
    assert value(samples, "lore_memory_edits_total", operation="insert") == 1
    assert value(samples, "lore_memory_edits_rejected_total") == 1


class CountingArchive:
    searches_without_vectors = 0

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.counted: list[str] = []

    async def count(self, team_id: str) -> int:
        self.counted.append(team_id)
        return self.sizes.get(team_id, 0)


async def test_archive_size_is_counted_rarely_and_for_new_workspaces_at_once() -> None:
    archive = CountingArchive()
    metrics = LoreMetrics(archive_refresh=3600)
    metrics.watch(turns=_Idle(), ingest=_Idle(), blocks=_NoEdits(), archive=archive)
    archive.sizes = {"T1": 5, "T2": 7}
    metrics.event_received("message", "T1")
    first = parse((await metrics.exposition(""))[0].decode())
    assert value(first, "lore_archive_messages", team="T1") == 5
    archive.sizes["T1"] = 6
    metrics.event_received("message", "T1")
    again = parse((await metrics.exposition(""))[0].decode())
    assert value(again, "lore_archive_messages", team="T1") == 5  # not counted again yet
    metrics.event_received("app_mention", "T2")
    widened = parse((await metrics.exposition(""))[0].decode())
    assert value(widened, "lore_archive_messages", team="T1") == 6
    assert value(widened, "lore_archive_messages", team="T2") == 7
    assert archive.counted == ["T1", "T1", "T2"]

    every_scrape = LoreMetrics(archive_refresh=0)
    every_scrape.watch(turns=_Idle(), ingest=_Idle(), blocks=_NoEdits(), archive=archive)
    every_scrape.event_received("message", "T1")
    await every_scrape.exposition("")
    archive.sizes["T1"] = 8
    latest = parse((await every_scrape.exposition(""))[0].decode())
    assert value(latest, "lore_archive_messages", team="T1") == 8


class _NoEdits:
    def __init__(self) -> None:
        self.counts = EditCounts()


class _Idle:
    depth = 0
    pending = 0


class _NoArchive:
    searches_without_vectors = 0

    async def count(self, team_id: str) -> int:
        del team_id
        return 0


SCRAPE_TOKEN = secrets.token_hex(32)
ADMIN_TOKEN = secrets.token_hex(32)


@pytest.fixture
async def lore_in_production(tmp_path: Path) -> AsyncIterator[Lore]:
    """A Lore configured for a real workspace (not local mode), with a scrape token."""
    settings = lore_settings(
        tmp_path,
        None,
        slack_bot_token="xoxb-1-metrics",
        slack_signing_secret=secrets.token_hex(16),
        lore_metrics_token=SCRAPE_TOKEN,
        lore_admin_token=ADMIN_TOKEN,
    )
    running = await start_lore(settings)
    yield running
    await running.stop()


async def test_outside_local_mode_metrics_need_the_scrape_token(
    lore_in_production: Lore,
) -> None:
    url = lore_in_production.url
    assert (await get_metrics(url))[0] == 401
    assert (await get_metrics(url, {"Authorization": "Bearer wrong"}))[0] == 401
    assert (await get_metrics(url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}))[0] == 401
    status, body = await get_metrics(url, {"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert status == 200
    assert "lore_turn_queue_depth 0.0" in body


async def test_outside_local_mode_without_a_token_metrics_are_off(tmp_path: Path) -> None:
    settings = lore_settings(
        tmp_path,
        None,
        slack_bot_token="xoxb-1-metrics",
        slack_signing_secret=secrets.token_hex(16),
    )
    running = await start_lore(settings)
    try:
        status, _body = await get_metrics(running.url, {"Authorization": "Bearer anything"})
        assert status == 404
    finally:
        await running.stop()


async def test_two_lores_in_one_process_keep_their_own_counts() -> None:
    first, second = LoreMetrics(), LoreMetrics()
    first.event_received("app_mention", "T1")
    first_body, _ = await first.exposition("")
    second_body, _ = await second.exposition("")
    assert value(parse(first_body.decode()), "lore_events_received_total", type="app_mention") == 1
    assert value(parse(second_body.decode()), "lore_events_received_total", type="app_mention") == 0


async def test_work_pending_counts_a_turn_under_way_and_is_zero_once_idle(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    release = asyncio.Event()

    async def held(_request: dict[str, Any]) -> Any:
        await release.wait()
        return reply(text("Answered at last."))

    fake_llm.respond_with(held)
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} a slow question")
    await fake_llm.wait_for_requests(1, timeout=20)
    busy = await scrape(lore)
    assert value(busy, "lore_work_pending") >= 1  # the turn is running
    release.set()
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
    await settled(emulator, lore)
    idle = await scrape(lore)
    assert value(idle, "lore_work_pending") == 0
    assert value(idle, "lore_events_handled_total", type="app_mention") + value(
        idle, "lore_events_handled_total", type="message"
    ) == total(idle, "lore_events_received_total") - total(idle, "lore_events_duplicate_total")
