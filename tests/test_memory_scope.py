"""The scope rule: edits from private conversations never reach workspace-wide blocks."""

from __future__ import annotations

import pytest

from app.agent.memory_scope import edit_target, memory_scope
from app.agent.ports import TurnRequest
from memory.edits import EditError


def asked_in(channel_id: str, channel_type: str) -> TurnRequest:
    return TurnRequest("T1", channel_id, channel_type, "1.0", "1.0", "U1", "hi")


@pytest.mark.parametrize("channel_type", ["group", "im", "mpim"])
def test_private_conversations_write_their_own_block(channel_type: str) -> None:
    request = asked_in("C9", channel_type)
    assert memory_scope(request) == "private:C9"
    assert edit_target("org", request) == "private:C9"
    assert edit_target("persona", request) == "private:C9"


def test_public_channels_write_workspace_blocks_only() -> None:
    request = asked_in("C1", "channel")
    assert memory_scope(request) is None
    assert edit_target("org", request) == "org"
    with pytest.raises(EditError):
        edit_target("private:C9", request)
    with pytest.raises(EditError):
        edit_target("secrets", request)
