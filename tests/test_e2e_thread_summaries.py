"""End to end: a thread longer than the history budget keeps its past. Its older part is
condensed into a stored summary in the background (LORE_REFLECT_MODEL), which the next turn
reads before the recent messages, within the budget; the summary grows with the thread; an
edited or deleted message it covers drops it; another thread never sees it. On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.main import Lore
from emulator import SlackEmulator
from memory.summaries import ThreadSummary
from tests.conftest import POSTGRES_URL, postgres_engine_or_skip
from tests.fake_anthropic import FakeAnthropic, ScriptItem, error, reply, text
from tests.harness import eventually, lore_settings, settled, start_lore_on, user_text
from tests.test_metrics import scrape, value

BOT = "<@U0LORE>"
CHANNEL = "C0GENERAL"
BUDGET_TOKENS = 500
BUDGET_CHARS = BUDGET_TOKENS * 4
REFLECT_MODEL = "claude-haiku-4-5"  # LORE_REFLECT_MODEL's default
PEOPLE = ("U0BOB", "U0CAROL", "U0ALICE")


class Model:
    """The fake model's answers: turns and summary requests each take the next of their own."""

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake
        self.answers: deque[str] = deque()
        self.summaries: deque[str] = deque()
        fake.respond_with(self._respond)

    def _respond(self, body: dict[str, Any]) -> ScriptItem:
        queue = self.summaries if body["model"] == REFLECT_MODEL else self.answers
        if not queue:
            return error(500, "api_error", f"no answer scripted for {body['model']}")
        return reply(text(queue.popleft()))

    def summary_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.fake.requests if r["model"] == REFLECT_MODEL]

    def turn_asking(self, question: str) -> dict[str, Any]:
        """The last turn request whose asked message (the last one) is `question`."""
        turns = [
            r
            for r in self.fake.requests
            if r["model"] != REFLECT_MODEL and question in _last_text(r)
        ]
        assert turns, f"no turn asked {question!r}"
        return turns[-1]


@dataclass
class Thread:
    """A long thread in #general and what was said in it, oldest first."""

    lore: Lore
    emulator: SlackEmulator
    model: Model
    ts: str
    said: dict[str, str]
    """Text by ts of every message posted by people (Lore's answers not included)."""

    @property
    def team(self) -> str:
        return self.emulator.config.team_id

    async def post_points(self, numbers: range) -> None:
        for n in numbers:
            posted = await self.emulator.post_message(PEOPLE[n % 3], CHANNEL, point(n), self.ts)
            self.said[str(posted["ts"])] = point(n)

    async def ask(self, question: str, answer: str, *, summary: str | None = None) -> None:
        """Ask in the thread and wait until Lore answered and is idle again (a summary job it
        started included); `summary` is what the summary request, if any, gets."""
        self.model.answers.append(answer)
        if summary is not None:
            self.model.summaries.append(summary)
        replies = len(self.emulator.bot_replies(CHANNEL, self.ts, True))
        asked = await self.emulator.post_message("U0ALICE", CHANNEL, question, self.ts)
        self.said[str(asked["ts"])] = question
        await self.emulator.wait_for_reply(CHANNEL, self.ts, count=replies + 1, timeout=30)
        await settled(self.emulator, self.lore)

    async def summary(self) -> ThreadSummary | None:
        return await self.lore.stores.summaries.get(self.team, CHANNEL, self.ts)

    async def made(self) -> float:
        """Summary jobs that stored a summary (the completion signal)."""
        return value(await scrape(self.lore), "lore_thread_summaries_total", outcome="made")

    def covered(self, summary: ThreadSummary) -> list[str]:
        return [self.said[ts] for ts in summary.covers if ts in self.said]

    def after(self, summary: ThreadSummary) -> list[str]:
        return [t for ts, t in self.said.items() if float(ts) > float(summary.upto_ts)]


@pytest.fixture(params=["sqlite", "postgres"])
async def lore(
    request: pytest.FixtureRequest,
    team_emulator: SlackEmulator,
    fake_llm: FakeAnthropic,
    tmp_path: Path,
) -> AsyncIterator[Lore]:
    overrides: dict[str, Any] = {"lore_history_tokens": BUDGET_TOKENS}
    if request.param == "postgres":
        await (await postgres_engine_or_skip()).dispose()
        overrides["database_url"] = POSTGRES_URL
    running = await start_lore_on(team_emulator, lore_settings(tmp_path, fake_llm, **overrides))
    yield running
    await running.stop()


@pytest.fixture
async def thread(lore: Lore, team_emulator: SlackEmulator, fake_llm: FakeAnthropic) -> Thread:
    """A thread of a parent and 12 messages (about 2,900 characters: longer than the budget),
    archived, in which Lore was asked once (its history then cut) and made a summary."""
    parent = await team_emulator.post_message("U0BOB", CHANNEL, point(0))
    made = Thread(lore, team_emulator, Model(fake_llm), str(parent["ts"]), {})
    made.said[made.ts] = point(0)
    await made.post_points(range(1, 13))
    await settled(team_emulator, lore)
    await made.ask(f"{BOT} what did we agree?", "Each step runs on its own day.", summary=SUMMARY_1)
    return made


SUMMARY_1 = "SUMMARY-ONE: the team agreed the migration's first steps run on days of their own."
SUMMARY_2 = "SUMMARY-TWO: every migration step so far runs on a day of its own."


def point(n: int) -> str:
    """A thread message of about 130 characters, told apart by its number."""
    return (
        f"point-{n:02d}: " + f"we agreed that step {n} of the migration runs on its own day. " * 2
    )


def _last_text(request: dict[str, Any]) -> str:
    content = request["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(b["text"] for b in content if b.get("type") == "text")


def _first_text(request: dict[str, Any]) -> str:
    content = request["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(b["text"] for b in content if b.get("type") == "text")


def prompt_chars(request: dict[str, Any]) -> int:
    """Characters of the thread (every message's text) in one model request."""
    return sum(
        len(message["content"])
        if isinstance(message["content"], str)
        else sum(len(b.get("text", "")) for b in message["content"])
        for message in request["messages"]
    )


def in_order(haystack: str, needles: list[str]) -> bool:
    """Whether every needle occurs in `haystack`, in this order."""
    at = 0
    for needle in needles:
        at = haystack.find(needle, at)
        if at < 0:
            return False
        at += len(needle)
    return True


async def test_a_long_thread_is_summarised_and_the_next_turn_reads_summary_then_recent(
    thread: Thread,
) -> None:
    first_turn = thread.model.turn_asking("what did we agree?")
    assert "earlier messages of this thread are not shown" in user_text(first_turn)
    assert "<summary" not in user_text(first_turn)  # none yet: cut to the budget, as before
    assert await thread.made() == 1
    summary = await thread.summary()
    assert summary is not None and summary.text == SUMMARY_1
    assert summary.input_tokens > 0 and summary.output_tokens > 0
    # the summary request holds the older part, and only that
    (request,) = thread.model.summary_requests()
    condensed = user_text(request)
    covered = thread.covered(summary)
    assert covered[:2] == [point(0), point(1)]  # from the parent on
    assert len(covered) == len(summary.covers) >= 5
    assert in_order(condensed, covered)
    assert not any(t in condensed for t in thread.after(summary))
    assert request["max_tokens"] <= BUDGET_TOKENS // 4
    metrics = await scrape(thread.lore)  # the summary's tokens are counted with the turns'
    for kind, key in (("output", "output_tokens"), ("input", "input_tokens")):
        reported = sum(u[key] for u in thread.model.fake.usages)
        assert value(metrics, "lore_model_tokens_total", kind=kind) == reported

    await thread.ask("and after that?", "Step 13 is next.")
    follow_up = thread.model.turn_asking("and after that?")
    shown = user_text(follow_up)
    assert _first_text(follow_up).startswith("<summary") and SUMMARY_1 in _first_text(follow_up)
    assert in_order(shown, [SUMMARY_1, *thread.after(summary)])  # then every later message
    assert not any(t in shown for t in covered)
    assert "not shown" not in shown
    assert prompt_chars(follow_up) <= BUDGET_CHARS
    assert prompt_chars(follow_up) > prompt_chars(first_turn) // 2
    assert await thread.made() == 1  # the recent part still fits: no update asked for


async def test_the_summary_grows_with_the_thread(thread: Thread) -> None:
    first = await thread.summary()
    assert first is not None
    await thread.post_points(range(13, 20))
    await settled(thread.emulator, thread.lore)
    await thread.ask("where are we now?", "At step 19.", summary=SUMMARY_2)
    assert await thread.made() == 2
    grown = await thread.summary()
    assert grown is not None and grown.text == SUMMARY_2
    assert grown.covers[: len(first.covers)] == first.covers
    assert float(grown.upto_ts) > float(first.upto_ts)
    assert grown.input_tokens > first.input_tokens
    update = thread.model.summary_requests()[-1]
    condensed = user_text(update)
    assert SUMMARY_1 in condensed  # the summary so far, folded into the next
    newly = [t for t in thread.covered(grown) if t not in thread.covered(first)]
    assert newly and in_order(condensed, newly)
    assert not any(t in condensed for t in thread.covered(first))  # not sent again

    await thread.ask("and next?", "Step 20.")
    turn = thread.model.turn_asking("and next?")
    shown = user_text(turn)
    assert SUMMARY_2 in _first_text(turn) and SUMMARY_1 not in shown
    assert in_order(shown, [SUMMARY_2, *thread.after(grown)])
    assert prompt_chars(turn) <= BUDGET_CHARS


async def test_an_edited_or_deleted_covered_message_drops_the_summary(thread: Thread) -> None:
    summary = await thread.summary()
    assert summary is not None
    emulator = thread.emulator
    # control: a message the summary does not cover leaves it as it is
    recent = next(ts for ts in thread.said if float(ts) > float(summary.upto_ts))
    await emulator.delete_message(CHANNEL, recent)
    await settled(emulator, thread.lore)
    assert await thread.summary() == summary

    deleted = summary.covers[3]
    await emulator.delete_message(CHANNEL, deleted)
    await eventually(lambda: _gone(thread))
    gone_text = thread.said.pop(deleted)
    await thread.ask("still agreed?", "Yes.", summary=SUMMARY_2)
    turn = thread.model.turn_asking("still agreed?")
    assert SUMMARY_1 not in user_text(turn)  # dropped: the turn is cut as before a summary
    assert "not shown" in user_text(turn)
    remade = await thread.summary()
    assert remade is not None and remade.text == SUMMARY_2 and deleted not in remade.covers
    assert gone_text not in user_text(thread.model.summary_requests()[-1])

    await emulator.edit_message(CHANNEL, remade.covers[2], "point-02: actually, no.")
    await eventually(lambda: _gone(thread))


async def _gone(thread: Thread) -> bool:
    return await thread.summary() is None


async def test_another_thread_never_reads_the_summary(thread: Thread) -> None:
    assert await thread.summary() is not None
    emulator = thread.emulator
    thread.model.answers.append("Nothing here yet.")
    other = await emulator.post_message("U0CAROL", CHANNEL, "A new topic: the offsite.")
    await emulator.post_message("U0BOB", CHANNEL, "Lisbon, in May.", str(other["ts"]))
    await settled(emulator, thread.lore)
    await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} where is it?", str(other["ts"]))
    await emulator.wait_for_reply(CHANNEL, str(other["ts"]), timeout=30)
    await settled(emulator, thread.lore)
    turn = thread.model.turn_asking("where is it?")
    shown = user_text(turn)
    assert "Lisbon, in May." in shown  # its own thread is there
    assert "<summary" not in shown and SUMMARY_1 not in shown
    summaries = thread.lore.stores.summaries
    assert await summaries.get(thread.team, CHANNEL, str(other["ts"])) is None
    assert await summaries.get(thread.team, "C0RANDOM", thread.ts) is None


async def test_retrieval_only_mode_makes_no_summaries(lore_retrieval_only: Lore) -> None:
    assert lore_retrieval_only.services.agent.retrieval_only
    assert lore_retrieval_only.services.summariser is None
