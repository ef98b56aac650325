"""What the App Home shows and lets admins change: memory blocks, counts, backfill, exclusions.

Only workspace-wide blocks (`persona`, `org`) are shown and editable here: a `private:<channel>`
block belongs to its channel or DM and never reaches the Home tab, which anyone can open.
Who may change things (workspace admins and owners) is the Slack edge's check, made again on
every action.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.backfill import Backfill, ChannelBackfill
from app.feedback import ReplyFeedback
from memory.archive import Archive
from memory.blocks import SCOPED_PREFIX, Block, EditResult, MemoryBlocks
from memory.conversations import Conversations
from memory.edits import EditError, Rethink
from memory.exclusions import Exclusions

EARLIER_VERSIONS = 25  # earlier versions offered for a revert, newest first


@dataclass(frozen=True)
class BlockHistory:
    """A block as it is now, its number of versions and its latest earlier versions."""

    block: Block
    versions: int
    earlier: list[Block]


@dataclass(frozen=True)
class HomeSnapshot:
    """Everything the Home tab shows, read at one moment."""

    blocks: list[BlockHistory]
    conversations: int
    archived: int
    helpful: int
    not_helpful: int
    backfill: list[ChannelBackfill]
    excluded: list[str]


class AppHome:
    """Reads the Home tab's figures and applies admins' changes through the stores' own rules."""

    def __init__(
        self,
        *,
        blocks: MemoryBlocks,
        conversations: Conversations,
        archive: Archive,
        feedback: ReplyFeedback,
        backfill: Backfill,
        exclusions: Exclusions,
    ) -> None:
        self._blocks = blocks
        self._conversations = conversations
        self._archive = archive
        self._feedback = feedback
        self._backfill = backfill
        self.exclusions = exclusions

    async def snapshot(self, team_id: str) -> HomeSnapshot:
        """The workspace-wide blocks with their versions, counts, backfill and exclusions."""
        (
            current,
            conversations,
            archived,
            (helpful, not_helpful),
            backfill,
            excluded,
        ) = await asyncio.gather(
            self._blocks.current(team_id),
            self._conversations.count(team_id),
            self._archive.count(team_id),
            self._feedback.counts(team_id),
            self._backfill.status(team_id),
            self.exclusions.channels(team_id),
        )
        shown = [b for b in current if not b.label.startswith(SCOPED_PREFIX)]
        histories = await asyncio.gather(*(self._history(team_id, b) for b in shown))
        return HomeSnapshot(
            blocks=list(histories),
            conversations=conversations,
            archived=archived,
            helpful=helpful,
            not_helpful=not_helpful,
            backfill=backfill,
            excluded=sorted(excluded),
        )

    async def block(self, team_id: str, label: str) -> Block:
        """The newest version of a workspace-wide block (EditError for others)."""
        _workspace_wide(label)
        found = await self._blocks.get(team_id, label)
        if found is None:
            raise EditError(f"no memory block named {label!r}")
        return found

    async def edit_block(
        self, team_id: str, label: str, text: str, *, based_on: int, user_id: str
    ) -> EditResult:
        """Replace a block's text, only if it is still at version `based_on`."""
        _workspace_wide(label)
        return await self._blocks.edit(
            team_id, label, Rethink(text), user_id=user_id, expected_version=based_on
        )

    async def revert_block(
        self, team_id: str, label: str, to_version: int, *, based_on: int, user_id: str
    ) -> EditResult:
        """Store a new version equal to version `to_version`, only if the newest is `based_on`."""
        _workspace_wide(label)
        versions = await self._blocks.history(team_id, label)
        old = next((b for b in versions if b.version == to_version), None)
        if old is None:
            raise EditError(f"block {label!r} has no version {to_version}")
        return await self._blocks.edit(
            team_id,
            label,
            Rethink(old.value, operation="revert"),
            user_id=user_id,
            expected_version=based_on,
        )

    async def exclude_channel(self, team_id: str, channel_id: str, user_id: str) -> int:
        """Keep a channel out of the archive from now on and delete what is archived of it;
        the number of messages deleted."""
        await self.exclusions.exclude(team_id, channel_id, user_id)
        return await self._archive.delete_channel(team_id, channel_id)

    async def include_channel(self, team_id: str, channel_id: str) -> None:
        """Archive a channel's new messages again (deleted ones stay deleted)."""
        await self.exclusions.include(team_id, channel_id)

    async def is_excluded(self, team_id: str, channel_id: str) -> bool:
        return await self.exclusions.is_excluded(team_id, channel_id)

    async def _history(self, team_id: str, block: Block) -> BlockHistory:
        versions = await self._blocks.history(team_id, block.label)
        earlier = [v for v in reversed(versions) if v.version != block.version]
        return BlockHistory(block, len(versions), earlier[:EARLIER_VERSIONS])


def _workspace_wide(label: str) -> None:
    if label.startswith(SCOPED_PREFIX):
        raise EditError("a channel's private memory cannot be changed from the App Home")
