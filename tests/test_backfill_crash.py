"""A backfill whose process is SIGKILLed in the middle of a page resumes when Lore starts again:
every message is archived, once, and no page is fetched more than once more than needed."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from pathlib import Path

from app.main import open_stores
from emulator import SlackEmulator
from memory.backfill_state import DONE, BackfillState
from memory.db import make_engine
from tests.conftest import ROOT
from tests.fake_anthropic import FakeAnthropic
from tests.harness import eventually, lore_settings, serve_env, wait_ready

TEAM = "T0LORE"  # the emulator's workspace
CHANNEL = "C0CRASH"
PAGE = 4  # messages per page; a replies page repeats the parent, so 3 replies each
TOP_LEVEL = 30
THREADS = {3: 7, 10: 4, 17: 2, 25: 5}  # top-level index -> replies


async def seed(emulator: SlackEmulator) -> set[str]:
    """The channel's history (Lore not yet a member); the ts of every message."""
    emulator.add_channel(CHANNEL, "crash", members=["U0ALICE", "U0BOB"])
    seeded: set[str] = set()
    for i in range(TOP_LEVEL):
        posted = await emulator.post_message(
            "U0ALICE", CHANNEL, f"decision {i}: the rollout plan, step {i}", deliver=False
        )
        seeded.add(posted["ts"])
        for j in range(THREADS.get(i, 0)):
            reply = await emulator.post_message(
                "U0BOB", CHANNEL, f"reply {j} on step {i}", thread_ts=posted["ts"], deliver=False
            )
            seeded.add(reply["ts"])
    return seeded


def pages_needed() -> int:
    """History and replies pages one uninterrupted backfill of the channel fetches."""
    history = math.ceil(TOP_LEVEL / PAGE)
    replies = sum(math.ceil(count / (PAGE - 1)) for count in THREADS.values())
    return history + replies


async def serve(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, data_dir: Path
) -> asyncio.subprocess.Process:
    """`python -m app serve` on embedded stores in `data_dir`, in a process group of its own
    (so SIGKILL takes its Chroma worker too, as a lost machine or container would)."""
    env = serve_env(
        emulator,
        fake_llm,
        data_dir,
        REDIS_URL="",
        LORE_BACKFILL_HISTORY_PER_MINUTE="60000",
        LORE_BACKFILL_REPLIES_PER_MINUTE="60000",
        LORE_BACKFILL_PAGE_SIZE=str(PAGE),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{env['PORT']}"
    await wait_ready(url, process)
    emulator.config.events_url = f"{url}/slack/events"
    return process


def fetches(emulator: SlackEmulator) -> int:
    reads = ("conversations.history", "conversations.replies")
    return sum(
        1 for method, args in emulator.calls if method in reads and args.get("channel") == CHANNEL
    )


async def test_a_backfill_killed_mid_page_resumes_and_archives_every_message_once(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    seeded = await seed(emulator)
    data_dir = tmp_path / "lore"
    emulator.slow_method("conversations.history", 1.5)  # a page stays in flight a while
    first = await serve(emulator, fake_llm, data_dir)
    try:
        await emulator.join_channel(CHANNEL)

        async def fourth_page_asked() -> bool:
            return len(emulator.timed_calls("conversations.history")) >= 4

        await eventually(fourth_page_asked, 60)
        os.killpg(first.pid, signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            os.killpg(first.pid, signal.SIGKILL)
            await first.wait()
    emulator.slow_method("conversations.history", 0)
    engine = make_engine(f"sqlite+aiosqlite:///{data_dir / 'lore.db'}")
    saved = await BackfillState(engine).get(TEAM, CHANNEL)
    assert saved is not None and saved.status != DONE
    assert saved.pages == fetches(emulator) - 1, "killed with the fourth page in flight"

    second = await serve(emulator, fake_llm, data_dir)
    try:

        async def done() -> bool:
            found = await BackfillState(engine).get(TEAM, CHANNEL)
            return found is not None and found.status == DONE

        await eventually(done, 60)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 60) == 0
    finally:
        if second.returncode is None:
            os.killpg(second.pid, signal.SIGKILL)
            await second.wait()
        await engine.dispose()

    # only the page in flight at the kill is fetched twice
    assert fetches(emulator) == pages_needed() + 1
    stores = await open_stores(lore_settings(data_dir, None, redis_url=None))
    try:
        assert await stores.archive.count(TEAM) == len(seeded)
        for ts in seeded:
            assert await stores.archive.get(TEAM, CHANNEL, ts) is not None, ts
    finally:
        await stores.close()
