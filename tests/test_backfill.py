"""Backfill: a channel's history and threads read into the archive through 429s, resumed after
a restart with nothing missed or repeated, triggered by Lore joining, and from the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.backfill.service import EXCLUDED
from app.main import Lore, open_stores
from emulator import SlackEmulator
from handlers.backfill import backfill_installed
from memory.backfill_state import DONE, PENDING, BackfillState, Position
from memory.db import make_engine
from tests.conftest import MODEL_DIR, ROOT, new_team
from tests.harness import eventually, lore_settings, start_lore_on

TEAM = "T0LORE"  # the emulator's workspace
CHANNEL = "C0HISTORY"
FAST = {
    "lore_backfill_history_per_minute": 60_000,
    "lore_backfill_replies_per_minute": 60_000,
    "lore_backfill_page_size": 4,
}


@dataclass
class Seeded:
    top_level: list[str]  # ts of messages shown in the channel, oldest first
    replies: dict[str, list[str]]  # parent ts -> reply ts, oldest first

    @property
    def all(self) -> set[str]:
        return set(self.top_level) | {ts for group in self.replies.values() for ts in group}


async def seed(emulator: SlackEmulator, *, bot_member: bool = False) -> Seeded:
    """A channel with 14 messages, three threads (7, 4 and 1 replies) and a join notice."""
    emulator.add_channel(CHANNEL, "history", members=["U0ALICE", "U0BOB"], bot_member=bot_member)
    emulator.workspace.add_message(
        CHANNEL,
        {"type": "message", "subtype": "channel_join", "user": "U0BOB", "text": "joined"},
    )
    seeded = Seeded([], {})
    replies = {2: 7, 6: 4, 11: 1}
    for i in range(14):
        author = "U0ALICE" if i % 2 == 0 else "U0BOB"
        posted = await emulator.post_message(
            author, CHANNEL, f"history message {i} about topic {i % 5}", deliver=False
        )
        seeded.top_level.append(posted["ts"])
        for j in range(replies.get(i, 0)):
            reply = await emulator.post_message(
                "U0BOB", CHANNEL, f"reply {j} to message {i}", thread_ts=posted["ts"], deliver=False
            )
            seeded.replies.setdefault(posted["ts"], []).append(reply["ts"])
    return seeded


async def start(emulator: SlackEmulator, data_dir: Path, **overrides: Any) -> Lore:
    return await start_lore_on(emulator, lore_settings(data_dir, None, **{**FAST, **overrides}))


async def backfill_done(lore: Lore, channel: str = CHANNEL, within: float = 60.0) -> None:
    async def done() -> bool:
        found = await lore.services.backfill.state.get(TEAM, channel)
        return found is not None and found.status == DONE

    await eventually(done, within)


async def assert_archived_once(lore: Lore, seeded: Seeded) -> None:
    archive = lore.stores.archive
    assert await archive.count(TEAM) == len(seeded.all)
    for ts in seeded.all:
        assert await archive.get(TEAM, CHANNEL, ts) is not None, ts
    [status] = [s for s in await lore.services.backfill.status(TEAM) if s.channel_id == CHANNEL]
    assert (status.status, status.messages, status.last_error) == (DONE, len(seeded.all), None)


def calls(emulator: SlackEmulator, method: str) -> int:
    return sum(1 for called, _ in emulator.calls if called == method)


async def test_backfill_of_a_channel_with_threads_through_429s(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    seeded = await seed(emulator)
    emulator.fail_method("conversations.history", "ratelimited", 1, after=1, retry_after=2)
    emulator.fail_method("conversations.replies", "ratelimited", 2, after=2, retry_after=2)
    lore = await start(emulator, tmp_path)
    try:
        await emulator.join_channel(CHANNEL, "U0CAROL")  # someone else joining: nothing to do
        await emulator.drain()
        await emulator.join_channel(CHANNEL)
        await backfill_done(lore)
        await assert_archived_once(lore, seeded)
        # 15 top-level messages (one a join notice) in pages of 4, one 429 retried; threads of
        # 7, 4 and 1 replies in pages of 3 (each page repeats the parent), two 429s retried
        assert calls(emulator, "conversations.history") == 4 + 1
        assert calls(emulator, "conversations.replies") == 3 + 2 + 1 + 2
        # each 429 was waited out: the call after it came Retry-After (2 s) later or more
        history = emulator.timed_calls("conversations.history")
        assert history[2] - history[1] >= 2.0
        replies = emulator.timed_calls("conversations.replies")
        assert replies[3] - replies[2] >= 2.0 and replies[4] - replies[3] >= 2.0
        parent, replies = next(iter(sorted(seeded.replies.items(), key=lambda i: -len(i[1]))))
        thread = await lore.stores.archive.thread(TEAM, CHANNEL, parent)
        assert [m.ts for m in thread] == [parent, *replies]
        reply = thread[1]
        assert reply.user_name == "Bob Brown" and reply.channel_type == "channel"
        assert reply.permalink is not None and f"thread_ts={parent}" in reply.permalink
        assert (await lore.services.backfill.state.get(TEAM, "C0GENERAL")) is None
    finally:
        await lore.stop()


async def test_restart_in_the_middle_misses_and_repeats_nothing(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    seeded = await seed(emulator)
    slow = {"lore_backfill_history_per_minute": 300, "lore_backfill_replies_per_minute": 300}
    first = await start(emulator, tmp_path, **slow)
    state = first.services.backfill.state
    try:
        await emulator.join_channel(CHANNEL)

        async def inside_a_thread() -> bool:
            found = await state.get(TEAM, CHANNEL)
            return found is not None and found.position.replies_cursor is not None

        await eventually(inside_a_thread)
    finally:
        await first.stop()  # stops the backfill after its current page
    second = await start(emulator, tmp_path)
    try:
        found = await second.services.backfill.state.get(TEAM, CHANNEL)
        assert found is not None and found.status == PENDING and found.position.latest
        assert 0 < await second.stores.archive.count(TEAM) < len(seeded.all)
        await backfill_done(second)  # resumed at start-up, without a new join
        await assert_archived_once(second, seeded)
    finally:
        await second.stop()


async def test_backfill_state_on_sqlite_and_postgres(any_engine: AsyncEngine) -> None:
    state = BackfillState(any_engine)
    team = new_team()
    first = await state.request(team, "C1")
    assert (first.status, first.messages, first.position) == (PENDING, 0, Position())
    position = await state.start(team, "C1", "1700000000.000000")
    assert position.latest == "1700000000.000000"
    await state.advance(team, "C1", Position(position.latest, "next", "1690000000.000100"), 5)
    await state.pause(team, "C1", "SlackApiError: ratelimited")
    assert team in await state.teams_unfinished()
    resumed = await state.start(team, "C1", "1800000000.000000")
    assert resumed == Position("1700000000.000000", "next", "1690000000.000100")
    await state.advance(team, "C1", None, 3)
    await state.request(team, "C2")
    [one, two] = await state.status(team)
    assert (one.status, one.messages, one.pages, one.last_error) == (DONE, 8, 2, None)
    assert one.finished_at is not None and two.status == PENDING
    assert await state.unfinished(team) == ["C2"]
    await state.delete_team(team)
    assert await state.status(team) == []


async def test_cli_backfills_every_channel_the_bot_is_in(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    seeded = await seed(emulator, bot_member=True)
    emulator.fail_method("conversations.replies", "ratelimited", 1, after=1, retry_after=0)
    done = await run_cli(emulator, tmp_path, "backfill", "--team", TEAM)
    assert done.returncode == 0, done.stderr
    assert f"{CHANNEL}: done, {len(seeded.all)} messages" in done.stdout.splitlines()
    assert "C0GENERAL: done, 0 messages" in done.stdout
    assert "backfilling T0LORE [" in done.stderr and "channels" in done.stderr
    again = await run_cli(emulator, tmp_path, "backfill", "--team", TEAM, "--channel", CHANNEL)
    assert again.returncode == 0
    assert again.stdout.strip() == f"{CHANNEL}: done, {len(seeded.all)} messages"
    wrong = await run_cli(emulator, tmp_path, "backfill", "--team", "T0OTHER")
    assert wrong.returncode == 2 and "not T0OTHER" in wrong.stderr
    settings = lore_settings(tmp_path, None)
    stores = await open_stores(settings)
    try:
        assert await stores.archive.count(TEAM) == len(seeded.all)
    finally:
        await stores.close()


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(emulator: SlackEmulator, data_dir: Path, *args: str) -> Done:
    """`python -m app ARGS` against the emulator, without blocking its event loop."""
    config = emulator.config
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LORE_DATA_DIR": str(data_dir),
        "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
        "LORE_LOG_LEVEL": "WARNING",
        "SLACK_BOT_TOKEN": config.bot_token,
        "SLACK_SIGNING_SECRET": config.signing_secret,
        "SLACK_API_URL": emulator.api_url,
        **{name.upper(): str(value) for name, value in FAST.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


async def test_install_queues_member_channels_and_a_rejoin_reads_what_was_missed(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    seeded = await seed(emulator, bot_member=True)
    lore = await start(emulator, tmp_path)
    try:
        assert lore.bolt is not None
        await backfill_installed(lore.bolt.client, TEAM, lore.services)
        await backfill_done(lore)
        await backfill_done(lore, "C0GENERAL")
        await assert_archived_once(lore, seeded)
        emulator.workspace.channel(CHANNEL).members.remove("U0LORE")  # Lore is removed...
        missed = await emulator.post_message("U0ALICE", CHANNEL, "said while Lore was out")
        await emulator.drain()
        await emulator.join_channel(CHANNEL)  # ...and invited back
        seeded.top_level.append(missed["ts"])

        async def caught_up() -> bool:
            return await lore.stores.archive.get(TEAM, CHANNEL, missed["ts"]) is not None

        await eventually(caught_up)
        await backfill_done(lore)
        await assert_archived_once(lore, seeded)
        await lore.services.workspace_data.forget(TEAM)  # uninstall forgets the progress too
        assert await lore.services.backfill.status(TEAM) == []
    finally:
        await lore.stop()


async def test_slack_lowest_pace_and_a_prompt_clean_stop(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    await seed(emulator)
    lowest = {
        "lore_backfill_history_per_minute": 1,
        "lore_backfill_replies_per_minute": 1,
        "lore_backfill_page_size": 15,
    }
    lore = await start(emulator, tmp_path, **lowest)
    state = lore.services.backfill.state
    try:
        await emulator.join_channel(CHANNEL)

        async def one_page() -> bool:
            found = await state.get(TEAM, CHANNEL)
            return found is not None and found.pages >= 2  # the first history and replies pages

        await eventually(one_page)

        async def held_by_its_pace() -> bool:  # the next call waits a minute for its turn
            return lore.services.backfill.pacing(TEAM)

        await eventually(held_by_its_pace)
        assert calls(emulator, "conversations.history") == 1
    finally:
        began = time.monotonic()
        await lore.stop()
    assert time.monotonic() - began < 3  # the pace's wait ends at once on shutdown
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'lore.db'}")
    try:
        found = await BackfillState(engine).get(TEAM, CHANNEL)
    finally:
        await engine.dispose()
    assert found is not None and (found.status, found.last_error) == (PENDING, None)
    assert found.messages >= 14 and found.position.cursor is None and found.position.thread_ts


async def test_an_excluded_channel_is_not_backfilled(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    await seed(emulator)
    lore = await start(emulator, tmp_path)
    try:
        await lore.stores.exclusions.exclude(TEAM, CHANNEL, "U0CAROL")
        await emulator.join_channel(CHANNEL)

        async def skipped() -> bool:
            found = await lore.services.backfill.state.get(TEAM, CHANNEL)
            return found is not None and found.last_error == EXCLUDED

        await eventually(skipped)
        assert calls(emulator, "conversations.history") == 0
        assert await lore.stores.archive.count(TEAM) == 0
    finally:
        await lore.stop()
