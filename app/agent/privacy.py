"""Which archived messages an answer may show, by where the answer is posted."""

from __future__ import annotations

from app.agent.ports import TurnRequest
from memory.archive import ArchivedMessage


def visible_in_answer(message: ArchivedMessage, request: TurnRequest) -> bool:
    """An answer posted in a channel may show public channels and that channel only.

    The asked message itself is never a search result: it is already the question.
    """
    if (message.channel_id, message.ts) == (request.channel_id, request.ts):
        return False
    return message.channel_type == "channel" or message.channel_id == request.channel_id
