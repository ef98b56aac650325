"""The feedback table on SQLite and PostgreSQL: one vote per user and reply, counts, deletion."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from memory.feedback import Feedback, Verdict, Vote
from tests.conftest import new_team


def vote(team_id: str, user_id: str, verdict: Verdict, reply_ts: str = "1.000100") -> Vote:
    return Vote(team_id, "C0GENERAL", reply_ts, user_id, verdict, conversation_id="conv-1")


async def test_second_vote_replaces_the_first_and_counts_follow(any_engine: AsyncEngine) -> None:
    feedback = Feedback(any_engine)
    team = new_team()
    assert await feedback.counts(team) == (0, 0)
    assert await feedback.record(vote(team, "U1", Verdict.HELPFUL)) is None
    assert await feedback.record(vote(team, "U2", Verdict.HELPFUL)) is None
    assert await feedback.record(vote(team, "U1", Verdict.NOT_HELPFUL)) == Verdict.HELPFUL
    assert await feedback.record(vote(team, "U1", Verdict.NOT_HELPFUL, "2.000100")) is None
    assert await feedback.counts(team) == (1, 2)
    assert await feedback.verdict(team, "C0GENERAL", "1.000100", "U1") == Verdict.NOT_HELPFUL


async def test_delete_team_leaves_other_workspaces(any_engine: AsyncEngine) -> None:
    feedback = Feedback(any_engine)
    gone, kept = new_team(), new_team()
    await feedback.record(vote(gone, "U1", Verdict.HELPFUL))
    await feedback.record(vote(kept, "U1", Verdict.NOT_HELPFUL))
    await feedback.delete_team(gone)
    assert await feedback.counts(gone) == (0, 0)
    assert await feedback.counts(kept) == (0, 1)
