"""Feedback on replies as the Slack edge sees it: a vote on a reply in a thread."""

from __future__ import annotations

from memory.conversations import Conversations
from memory.feedback import Feedback, Verdict, Vote


class ReplyFeedback:
    """Records votes with the thread's conversation; counts them for the App Home."""

    def __init__(self, feedback: Feedback, conversations: Conversations) -> None:
        self._feedback = feedback
        self._conversations = conversations

    async def vote(
        self,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str | None,
        reply_ts: str,
        user_id: str,
        verdict: Verdict,
    ) -> Verdict | None:
        """Store the user's vote on a reply (replacing an earlier one); the earlier verdict."""
        conversation = (
            await self._conversations.find(team_id, channel_id, thread_ts) if thread_ts else None
        )
        return await self._feedback.record(
            Vote(
                team_id=team_id,
                channel_id=channel_id,
                reply_ts=reply_ts,
                user_id=user_id,
                verdict=verdict,
                conversation_id=conversation.id if conversation else None,
            )
        )

    async def counts(self, team_id: str) -> tuple[int, int]:
        """(helpful, not helpful) votes of a workspace."""
        return await self._feedback.counts(team_id)
