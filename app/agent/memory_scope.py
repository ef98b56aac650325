"""Where a memory edit may land: private conversations keep their own block.

An edit made from a private channel, a group DM or a DM goes to that conversation's own block
(`private:<channel>`), never into a workspace-wide one, so nothing said in private reaches
people outside it through shared memory.
"""

from __future__ import annotations

from app.agent.ports import TurnRequest
from memory.blocks import DEFAULT_BLOCKS, SCOPED_PREFIX, scoped_label
from memory.edits import EditError

PRIVATE_CHANNEL_TYPES = frozenset({"group", "im", "mpim"})


def memory_scope(request: TurnRequest) -> str | None:
    """The private block this conversation sees and writes, or None in a public channel."""
    if request.channel_type in PRIVATE_CHANNEL_TYPES:
        return scoped_label(request.channel_id)
    return None


def edit_target(label: str, request: TurnRequest) -> str:
    """The block an edit of `label` made in this conversation actually changes."""
    scope = memory_scope(request)
    if scope is not None:
        return scope
    if label.startswith(SCOPED_PREFIX) or label not in DEFAULT_BLOCKS:
        raise EditError(f"no memory block named {label!r} is editable here")
    return label
