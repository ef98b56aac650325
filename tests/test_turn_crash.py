"""A question Lore acknowledged is answered even if the process answering it is killed: its
intake entry stays until the turn has ended, and the process that archives what a dead one left
answers the question too (once), while a message that asked nothing stays unanswered."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
from pathlib import Path

from emulator import SlackEmulator
from tests.chroma_server import free_port
from tests.fake_anthropic import FakeAnthropic, delay, reply, text
from tests.harness import eventually, serve_env, work_pending_at
from tests.processes import chroma_worker_of, held, lexical_rows, serving

CHANNEL = "C0GENERAL"
BOT = "<@U0LORE>"


async def test_a_question_whose_process_was_killed_is_answered_after_the_restart(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    token = secrets.token_hex(16)
    env = serve_env(emulator, fake_llm, data, REDIS_URL="", LORE_METRICS_TOKEN=token)
    fake_llm.script(
        delay(120, reply(text("The first process never gets to say this."))),
        reply(text("The offsite is in Lisbon.")),
    )

    async with serving(env) as process:
        emulator.config.events_url = f"http://127.0.0.1:{env['PORT']}/slack/events"
        asked = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} where is the offsite?")
        plain = await emulator.post_message("U0BOB", CHANNEL, "lunch is at noon today")

        async def under_way() -> bool:  # both archived, the question's turn waiting on the model
            rows = lexical_rows(data, team, CHANNEL)
            return len(fake_llm.requests) == 1 and {asked["ts"], plain["ts"]} <= set(rows)

        await eventually(under_way, within=60)
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    assert emulator.bot_replies(CHANNEL, asked["ts"], finished=False) == []

    restarted = {**env, "PORT": str(free_port())}
    url = f"http://127.0.0.1:{restarted['PORT']}"
    async with serving(restarted) as process:
        emulator.config.events_url = f"{url}/slack/events"
        [answer] = await emulator.wait_for_reply(CHANNEL, asked["ts"], timeout=60)
        assert answer["text"].startswith("The offsite is in Lisbon.")

        async def idle() -> bool:
            return await work_pending_at(url, token) == 0

        await eventually(idle, within=60)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    assert len(emulator.bot_replies(CHANNEL, asked["ts"], finished=False)) == 1  # once
    assert emulator.bot_replies(CHANNEL, plain["ts"], finished=False) == []  # asked nothing
    assert len(fake_llm.requests) == 2


def _segments(data: Path) -> set[Path]:
    """The intake's log files: a dead process's are deleted once all their entries are done."""
    return set((data / "intake").glob("*.log"))


async def _replayed(data: Path, left: set[Path]) -> None:
    """Wait until the restarted process has finished every entry the dead one left."""

    async def done() -> bool:
        return not (left & _segments(data))

    await eventually(done, within=60)


async def test_a_message_deleted_while_no_process_ran_is_neither_answered_nor_kept(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    """A question, and a plain message acknowledged but not archived yet, deleted while no
    process ran. Who may see them: nobody, once Slack no longer shows them; the controls, a
    question and a plain message left in Slack, are answered and archived after the restart."""
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    env = serve_env(emulator, fake_llm, data, REDIS_URL="")
    fake_llm.script(
        delay(120, reply(text("The first process never gets to say this."))),
        delay(120, reply(text("Nor this."))),
        reply(text("The offsite is in Lisbon.")),
    )

    async with serving(env) as process:
        emulator.config.events_url = f"http://127.0.0.1:{env['PORT']}/slack/events"
        deleted = await emulator.post_message("U0BOB", CHANNEL, f"{BOT} what is Carol's salary?")
        kept = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} where is the offsite?")

        async def under_way() -> bool:
            rows = lexical_rows(data, team, CHANNEL)
            return len(fake_llm.requests) == 2 and {deleted["ts"], kept["ts"]} <= set(rows)

        await eventually(under_way, within=60)
        with held(chroma_worker_of(process.pid)):  # acknowledged, kept, not archived
            said = await emulator.post_message("U0BOB", CHANNEL, "Carol earns 90k, keep it quiet")
            stays = await emulator.post_message("U0BOB", CHANNEL, "lunch is at noon today")
            await emulator.drain()
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    emulator.config.events_url = None  # their deletions reach no process (Slack gave up)
    await emulator.delete_message(CHANNEL, deleted["ts"])
    await emulator.delete_message(CHANNEL, said["ts"])
    await emulator.drain()
    left = _segments(data)

    restarted = {**env, "PORT": str(free_port())}
    async with serving(restarted) as process:
        emulator.config.events_url = f"http://127.0.0.1:{restarted['PORT']}/slack/events"
        [answer] = await emulator.wait_for_reply(CHANNEL, kept["ts"], timeout=60)
        assert answer["text"].startswith("The offsite is in Lisbon.")
        await _replayed(data, left)
        rows = lexical_rows(data, team, CHANNEL)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    assert emulator.bot_replies(CHANNEL, deleted["ts"], finished=False) == []
    assert deleted["ts"] not in rows and said["ts"] not in rows
    assert kept["ts"] in rows and stays["ts"] in rows
    assert len(fake_llm.requests) == 3


def _replied_in(data: Path, thread_ts: str) -> bool:
    """Whether the SQLite file records a reply of Lore's in the thread (`record_reply`)."""
    with sqlite3.connect(f"file:{data / 'lore.db'}?mode=ro", uri=True) as db:
        query = "SELECT bot_replied FROM conversations WHERE thread_ts = ?"
        return any(row[0] for row in db.execute(query, (thread_ts,)))


async def test_a_reply_posted_before_its_process_died_is_archived_and_not_posted_again(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    """The process dies after posting its reply, before archiving it (its Chroma worker is
    held): the next process does not answer again, and archives the reply as Slack shows it,
    with the message its source link points to, so that deleting that message takes the reply
    out of the archive too (who may see it: nobody, once its source is gone). The control is
    the first test: a question whose reply was never posted is answered."""
    emulator = team_emulator
    team = emulator.config.team_id
    data = tmp_path / "lore"
    env = serve_env(emulator, fake_llm, data, REDIS_URL="")

    async with serving(env) as process:
        emulator.config.events_url = f"http://127.0.0.1:{env['PORT']}/slack/events"
        source = await emulator.post_message("U0BOB", CHANNEL, "The offsite moved to Lisbon.")

        async def source_archived() -> bool:
            return source["ts"] in lexical_rows(data, team, CHANNEL)

        await eventually(source_archived, within=60)
        link = f"https://lore-test.slack.com/archives/{CHANNEL}/p{source['ts'].replace('.', '')}"
        fake_llm.script(reply(text(f"The offsite is in Lisbon ({link}).")))
        with held(chroma_worker_of(process.pid)):  # nothing reaches the archive meanwhile
            asked = await emulator.post_message("U0ALICE", CHANNEL, f"{BOT} where is the offsite?")
            [posted] = await emulator.wait_for_reply(CHANNEL, asked["ts"], timeout=60)

            async def recorded() -> bool:
                return _replied_in(data, asked["ts"])

            await eventually(recorded, within=60)
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert posted["ts"] not in lexical_rows(data, team, CHANNEL)
    left = _segments(data)
    fake_llm.script(reply(text("Said twice.")))

    restarted = {**env, "PORT": str(free_port())}
    async with serving(restarted) as process:
        emulator.config.events_url = f"http://127.0.0.1:{restarted['PORT']}/slack/events"
        await _replayed(data, left)
        rows = lexical_rows(data, team, CHANNEL)
        assert asked["ts"] in rows  # the question, archived by the replay
        assert rows.get(posted["ts"], "").startswith("The offsite is in Lisbon")
        await emulator.delete_message(CHANNEL, source["ts"])

        async def reply_gone() -> bool:
            return posted["ts"] not in lexical_rows(data, team, CHANNEL)

        await eventually(reply_gone, within=60)
        assert asked["ts"] in lexical_rows(data, team, CHANNEL)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    assert [r["ts"] for r in emulator.bot_replies(CHANNEL, asked["ts"], finished=False)] == [
        posted["ts"]
    ]
    assert len(fake_llm.requests) == 1
