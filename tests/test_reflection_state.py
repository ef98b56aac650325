"""Reflection's saved state on SQLite and PostgreSQL: positions only move on, a thread sent back
while it is being read stays sent back, runs are finished once, spend adds up, and a workspace's
state is forgotten without touching another's."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from memory.lexical import LexicalIndex
from memory.messages import ArchivedMessage
from memory.reflection_state import ReflectionState, Run, ThreadRead
from tests.conftest import new_team


def message(team: str, channel: str, ts: str, thread_ts: str | None = None) -> ArchivedMessage:
    return ArchivedMessage(team, channel, "channel", ts, f"said at {ts}", "U1", thread_ts)


async def archive_rows(engine: AsyncEngine, *messages: ArchivedMessage) -> None:
    lexical = await LexicalIndex.open(engine)
    await lexical.write(messages[0].team_id, upserts=[(m, "") for m in messages])


async def test_threads_after_a_position_and_positions_that_only_move_on(
    any_engine: AsyncEngine,
) -> None:
    team = new_team()
    state = ReflectionState(any_engine)
    await archive_rows(
        any_engine,
        message(team, "C1", "100.000100"),
        message(team, "C1", "101.000100", "100.000100"),
        message(team, "C1", "200.000100"),
        message(team, "C2", "150.000100"),
    )
    assert team in await state.teams()
    tops = {t.channel_id: t.newest for t in await state.channels(team)}
    assert tops == {"C1": 200.0001, "C2": 150.0001}
    marks = await state.threads_after(team, "C1", 150.0)
    assert [(m.thread_ts, m.newest) for m in marks] == [("200.000100", 200.0001)]
    both = await state.threads_after(team, "C1", 0.0)
    assert [m.thread_ts for m in both] == ["100.000100", "200.000100"]
    assert both[0].newest == 101.0001 and both[0].read_upto == 0.0

    await state.advance(team, {"C1": 150.0})
    await state.advance(team, {"C1": 120.0, "C2": 10.0})
    assert await state.positions(team) == {"C1": 150.0, "C2": 10.0}


async def test_a_thread_sent_back_during_its_reflection_is_read_again_after(
    any_engine: AsyncEngine,
) -> None:
    team = new_team()
    state = ReflectionState(any_engine)
    await archive_rows(
        any_engine,
        message(team, "C1", "100.000100"),
        message(team, "C1", "101.000100", "100.000100"),
    )
    [mark] = await state.threads_after(team, "C1", 0.0)
    assert not mark.reopened
    await state.record_run(
        Run("run-a" + team, team, {}, [], 0), [ThreadRead("C1", "100.000100", 101.0001, 0)]
    )
    assert await state.threads_after(team, "C1", 101.0001) == []

    await state.reopen(team, "C1", "100.000100")
    assert await state.reopened_channels(team) == {"C1"}
    [sent_back] = await state.threads_after(team, "C1", 101.0001)
    assert sent_back.reopened and sent_back.reopens == 1
    await state.reopen(team, "C1", "100.000100")  # again, while the first is being read
    await state.record_run(
        Run("run-b" + team, team, {}, [], 0),
        [ThreadRead("C1", "100.000100", 101.0001, sent_back.reopens)],
    )
    [still] = await state.threads_after(team, "C1", 101.0001)
    assert still.reopened
    await state.record_run(
        Run("run-c" + team, team, {}, [], 0),
        [ThreadRead("C1", "100.000100", 101.0001, still.reopens)],
    )
    assert await state.threads_after(team, "C1", 101.0001) == []
    assert await state.reopened_channels(team) == set()


async def test_runs_are_finished_once_and_spend_adds_up_per_day(any_engine: AsyncEngine) -> None:
    team, other = new_team(), new_team()
    state = ReflectionState(any_engine)
    operations = [{"name": "note_add", "input": {"text": "x", "sources": []}}]
    await state.record_run(Run("run-" + team, team, {"channel": None}, operations, 0), [])
    [run] = await state.unfinished_runs(team)
    assert run.operations == operations and run.scope == {"channel": None} and run.applied == 0
    await state.applied(run.id, 1)
    assert (await state.unfinished_runs(team))[0].applied == 1
    await state.finish(run.id)
    assert await state.unfinished_runs(team) == []
    assert await state.runs(team) == 1

    assert await state.spend(team, "2026-12-05", 1200) == 1200
    assert await state.spend(team, "2026-12-05", 300) == 1500
    assert await state.spent(team, "2026-12-06") == 0
    await state.spend(other, "2026-12-05", 7)

    await state.delete_team(team)
    assert await state.runs(team) == 0 and await state.spent(team, "2026-12-05") == 0
    assert await state.spent(other, "2026-12-05") == 7
    await state.delete_team(other)
