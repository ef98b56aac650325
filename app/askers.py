"""Whether someone waits for Lore's answer to a message: the one rule the agent answers by and
the turn queue's busy / restarting notes follow."""

from __future__ import annotations

from memory.conversations import Conversation, Conversations


class Askers:
    """Lore answers a mention, a DM, and later messages of a thread it has replied in.

    The agent answers only these; a turn refused (busy) or handed back (restarting) is
    announced only there too, so a thread Lore is not part of never hears from it.
    """

    def __init__(self, conversations: Conversations) -> None:
        self._conversations = conversations

    async def expects_answer(
        self, team_id: str, channel_id: str, thread_ts: str, *, mentioned: bool, direct: bool
    ) -> bool:
        if mentioned or direct:
            return True
        return await self._replied_in(team_id, channel_id, thread_ts) is not None

    async def conversation_to_answer(
        self, team_id: str, channel_id: str, thread_ts: str, *, mentioned: bool, direct: bool
    ) -> Conversation | None:
        """The thread's conversation when Lore answers this message (opened for a mention or a
        DM), else None; one look-up where the rule and the turn both need the thread's row."""
        if mentioned or direct:
            return await self._conversations.open(team_id, channel_id, thread_ts)
        return await self._replied_in(team_id, channel_id, thread_ts)

    async def answered(self, team_id: str, channel_id: str, thread_ts: str, ts: str) -> bool:
        """Whether Lore's reply to the message `ts` is posted (recorded as it was)."""
        return await self._conversations.answered(team_id, channel_id, thread_ts, ts)

    async def _replied_in(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> Conversation | None:
        known = await self._conversations.find(team_id, channel_id, thread_ts)
        return known if known is not None and known.bot_replied else None
