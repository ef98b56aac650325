"""Whether someone waits for Lore's answer to a message: the one rule the agent answers by and
the turn queue's busy / restarting notes follow."""

from __future__ import annotations

from memory.conversations import Conversations


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
        known = await self._conversations.find(team_id, channel_id, thread_ts)
        return known is not None and known.bot_replied
