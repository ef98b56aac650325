"""Which archived messages an answer may show, by where the answer is posted."""

from __future__ import annotations

from app.agent.ports import TurnRequest
from memory.archive import ArchivedMessage
from memory.audience import Audience


def visible_in_answer(message: ArchivedMessage, request: TurnRequest) -> bool:
    """An answer posted in a channel may show public channels and that channel only.

    The asked message itself is never a search result: it is already the question.
    """
    if (message.channel_id, message.ts) == (request.channel_id, request.ts):
        return False
    return message.channel_type == "channel" or message.channel_id == request.channel_id


def audience_for_answer(request: TurnRequest) -> Audience:
    """An answer posted in a channel: public channels plus that channel.

    A DM's answer is seen by the asker alone, so it also covers their private conversations.
    """
    return Audience(channels=frozenset({request.channel_id}) | request.reader_channels)


def audience_for_reader(channel_id: str, private_conversations: frozenset[str]) -> Audience:
    """A result only its reader sees (an ephemeral `/recall`): their private conversations too."""
    return Audience(channels=frozenset({channel_id}) | private_conversations)
