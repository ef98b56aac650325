"""What the App Home shows and lets admins change: memory blocks, notes, counts, backfill,
exclusions.

What a viewer sees and may change is their `Access` (built for each view and each action):
only workspace-wide blocks (`persona`, `org`; guests and other organisations' members: not
`org`) are shown, and changed only by workspace admins and owners; a `private:<channel>` block
never reaches the Home tab. Rows about private channels, DMs and group DMs (backfill,
exclusions) are shown to admins only. A note says what was said where it was learned, so it is
shown only to who may read that conversation, admins included; only admins retract notes, and
only notes they are shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.agent.access import Access
from app.backfill import Backfill, ChannelBackfill
from app.feedback import ReplyFeedback
from app.reflection import Reflection
from memory.archive import Archive
from memory.blocks import SCOPED_PREFIX, Block, EditResult, MemoryBlocks
from memory.conversations import Conversation, Conversations
from memory.edits import EditError, Rethink
from memory.exclusions import Exclusions
from memory.notes import Note, NoteError, Notes
from memory.summaries import ThreadSummaries

EXCLUDED = "its channel was excluded from the archive"
EARLIER_VERSIONS = 25  # earlier versions offered for a revert, newest first

ChannelKind = Callable[[str], Awaitable[str]]
"""A channel's type (channel, group, im, mpim), as Slack says now."""


@dataclass(frozen=True)
class BlockHistory:
    """A block as it is now, its number of versions and its latest earlier versions."""

    block: Block
    versions: int
    earlier: list[Block]
    thread: Conversation | None = None
    """The conversation (thread) the newest version was asked in, where the viewer may see it."""


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
    reflection: str | None = None
    """How reflection stands today (its token budget), when it runs."""
    notes: list[Note] = field(default_factory=list)
    """The active notes the viewer may see, newest first."""


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
        summaries: ThreadSummaries | None = None,
        reflection: Reflection | None = None,
        notes: Notes | None = None,
    ) -> None:
        self._summaries = summaries
        self._reflection = reflection
        self._blocks = blocks
        self._notes = notes
        self._conversations = conversations
        self._archive = archive
        self._feedback = feedback
        self._backfill = backfill
        self.exclusions = exclusions

    async def snapshot(self, access: Access, kind_of: ChannelKind) -> HomeSnapshot:
        """The blocks `access` reads with their versions, counts, and the backfill and
        exclusion rows it may see (`kind_of` tells a row's channel type)."""
        team_id = access.team_id
        (
            current,
            conversations,
            archived,
            (helpful, not_helpful),
            backfill,
            excluded,
        ) = await asyncio.gather(
            self._blocks.current(team_id, access.memory),
            self._conversations.count(team_id),
            self._archive.count(team_id),
            self._feedback.counts(team_id),
            self._backfill.status(team_id),
            self.exclusions.channels(team_id),
        )
        notes = (
            await self._notes.active(team_id, audience=access.audience)
            if self._notes is not None
            else []
        )
        shown = [b for b in current if not b.label.startswith(SCOPED_PREFIX)]
        histories = await asyncio.gather(*(self._history(access, kind_of, b) for b in shown))
        return HomeSnapshot(
            blocks=list(histories),
            conversations=conversations,
            archived=archived,
            helpful=helpful,
            not_helpful=not_helpful,
            backfill=[row for row in backfill if await _row_shown(access, kind_of, row.channel_id)],
            excluded=sorted([c for c in excluded if await _row_shown(access, kind_of, c)]),
            reflection=await self._reflection_line(team_id),
            notes=notes,
        )

    async def _reflection_line(self, team_id: str) -> str | None:
        if self._reflection is None:
            return None
        status = await self._reflection.budget.status(team_id)
        if status.over:
            return (
                f"Reflection has spent today's {status.limit:,} tokens and has stopped for the "
                "day: quiet threads are read again from 00:00 UTC."
            )
        return f"Reflection today: {status.spent:,} of {status.limit:,} tokens."

    async def retract_note(self, access: Access, note_id: str) -> Note:
        """An admin retracts a note (kept in its history); EditError for anyone else."""
        if not access.admin or access.asker is None:
            raise NoteError("only workspace admins and owners can retract notes")
        if self._notes is None:
            raise NoteError("notes are not kept here")
        note = await self._notes.retract(
            access.team_id,
            note_id,
            reason="retracted in the App Home",
            by=f"admin:{access.asker}",
            audience=access.audience,
        )
        if note is None:
            raise NoteError(f"there is no note {note_id}")
        return note

    async def block(self, access: Access, label: str) -> Block:
        """The newest version of a workspace-wide block (EditError for others)."""
        _workspace_wide(label)
        found = await self._blocks.get(access.team_id, label, access.memory)
        if found is None:
            raise EditError(f"no memory block named {label!r}")
        return found

    async def edit_block(
        self, access: Access, label: str, text: str, *, based_on: int
    ) -> EditResult:
        """Replace a block's text, only if it is still at version `based_on`."""
        _workspace_wide(label)
        return await self._blocks.edit(
            access.team_id,
            label,
            Rethink(text),
            scope=access.memory,
            user_id=access.asker,
            expected_version=based_on,
        )

    async def revert_block(
        self, access: Access, label: str, to_version: int, *, based_on: int
    ) -> EditResult:
        """Store a new version equal to version `to_version`, only if the newest is `based_on`."""
        _workspace_wide(label)
        versions = await self._blocks.history(access.team_id, label, access.memory)
        old = next((b for b in versions if b.version == to_version), None)
        if old is None:
            raise EditError(f"block {label!r} has no version {to_version}")
        return await self._blocks.edit(
            access.team_id,
            label,
            Rethink(old.value, operation="revert"),
            scope=access.memory,
            user_id=access.asker,
            expected_version=based_on,
        )

    async def exclude_channel(self, team_id: str, channel_id: str, user_id: str) -> int:
        """Keep a channel out of the archive from now on and delete what is archived of it,
        its threads' summaries too; the number of messages deleted."""
        await self.exclusions.exclude(team_id, channel_id, user_id)
        if self._notes is not None:
            await self._notes.channel_deleted(
                team_id, channel_id, by=f"admin:{user_id}", reason=EXCLUDED
            )
        deleted = await self._archive.delete_channel(team_id, channel_id)
        if self._summaries is not None:
            await self._summaries.delete_channel(team_id, channel_id)
        return deleted

    async def include_channel(self, team_id: str, channel_id: str) -> None:
        """Archive a channel's new messages again (deleted ones stay deleted)."""
        await self.exclusions.include(team_id, channel_id)

    async def is_excluded(self, team_id: str, channel_id: str) -> bool:
        return await self.exclusions.is_excluded(team_id, channel_id)

    async def _history(self, access: Access, kind_of: ChannelKind, block: Block) -> BlockHistory:
        versions = await self._blocks.history(access.team_id, block.label, access.memory)
        earlier = [v for v in reversed(versions) if v.version != block.version]
        thread = None
        if block.conversation_id:
            thread = await self._conversations.get(access.team_id, block.conversation_id)
            if thread and not await _row_shown(access, kind_of, thread.channel_id):
                thread = None
        return BlockHistory(block, len(versions), earlier[:EARLIER_VERSIONS], thread)


async def _row_shown(access: Access, kind_of: ChannelKind, channel_id: str) -> bool:
    return access.admin or access.shows_channel_row(channel_id, await kind_of(channel_id))


def _workspace_wide(label: str) -> None:
    if label.startswith(SCOPED_PREFIX):
        raise EditError("a channel's private memory cannot be changed from the App Home")
