"""Memory blocks: every version kept in SQL; edits serialised by a lock and checked by version.

An edit reads the newest version n, applies the edit rule (`edits.py`) and inserts version n+1.
The (team, label, version) primary key refuses a second n+1, so even when a lock has expired a
stale writer cannot clobber a newer version: it re-reads and re-applies its edit instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory.db import BlockVersion
from memory.edits import Edit, EditError, apply_edit, short_diff
from memory.locks import WorkspaceLocks

log = logging.getLogger("lore.memory")

DEFAULT_BLOCKS: dict[str, str] = {
    "persona": (
        "I am Lore, this workspace's institutional memory. I answer from what people have said "
        "in Slack, cite the messages I used, and say plainly when I do not know."
    ),
    "org": "",
}

MAX_CAS_ATTEMPTS = 20
SCOPED_PREFIX = "private:"


def scoped_label(channel_id: str) -> str:
    """The label of the memory block private to one channel or DM."""
    return f"{SCOPED_PREFIX}{channel_id}"


@dataclass(frozen=True)
class Block:
    """A memory block as stored at one version."""

    label: str
    value: str
    version: int
    char_limit: int
    created_at: datetime
    conversation_id: str | None
    user_id: str | None
    operation: str


@dataclass(frozen=True)
class EditResult:
    """What an edit did: the new block and a short diff of the change."""

    block: Block
    diff: str


@dataclass
class EditCounts:
    """What this store's edits came to since it was opened; read by the metrics at scrape time."""

    stored: Counter[str] = field(default_factory=Counter)
    """Versions written, by operation (insert, replace, rethink, forget)."""
    conflicts: int = 0
    """Times another writer stored version n+1 first, so the edit was re-applied."""
    rejected: int = 0
    """Edits refused with an EditError (text not found, over the limit, stale version, ...)."""


class VersionConflict(Exception):
    """Another writer stored the same version first; the edit must be re-applied."""


class MemoryBlocks:
    """The workspace memory blocks store."""

    def __init__(self, engine: AsyncEngine, locks: WorkspaceLocks, char_limit: int = 5000):
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._locks = locks
        self._char_limit = char_limit
        self.counts = EditCounts()

    async def current(self, team_id: str, scope: str | None = None) -> list[Block]:
        """The workspace-wide blocks (created once) and, when given, the `scope` block.

        Scoped blocks of other channels are never included: they stay where they were written.
        """
        wanted = [*DEFAULT_BLOCKS, *([scope] if scope else [])]
        async with self._sessions() as session:
            blocks = await self._heads(session, team_id)
        missing = [label for label in wanted if label not in {b.label for b in blocks}]
        for label in missing:
            await self._create_default(team_id, label)
        if missing:
            async with self._sessions() as session:
                blocks = await self._heads(session, team_id)
        return sorted((b for b in blocks if b.label in wanted), key=_display_order)

    async def get(self, team_id: str, label: str) -> Block | None:
        scope = label if label.startswith(SCOPED_PREFIX) else None
        return next((b for b in await self.current(team_id, scope) if b.label == label), None)

    async def history(self, team_id: str, label: str) -> list[Block]:
        """Every stored version of one block, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(BlockVersion)
                .where(BlockVersion.team_id == team_id, BlockVersion.label == label)
                .order_by(BlockVersion.version)
            )
            return [_block(row) for row in rows]

    async def edit(
        self,
        team_id: str,
        label: str,
        edit: Edit,
        *,
        conversation_id: str | None = None,
        user_id: str | None = None,
        expected_version: int | None = None,
    ) -> EditResult:
        """Apply `edit` to the newest version of `label`, storing version n+1.

        Raises EditError when the edit does not apply (unknown block, text not found, ...), or
        when `expected_version` is given and the newest version is another one.
        """
        try:
            result = await self._edit_locked(
                team_id, label, edit, conversation_id, user_id, expected_version
            )
        except EditError:
            self.counts.rejected += 1
            raise
        self.counts.stored[edit.operation] += 1
        return result

    async def _edit_locked(
        self,
        team_id: str,
        label: str,
        edit: Edit,
        conversation_id: str | None,
        user_id: str | None,
        expected_version: int | None,
    ) -> EditResult:
        scope = label if label.startswith(SCOPED_PREFIX) else None
        if label not in {b.label for b in await self.current(team_id, scope)}:
            raise EditError(f"no memory block named {label!r}")
        async with self._locks.hold(team_id):
            for _attempt in range(MAX_CAS_ATTEMPTS):
                try:
                    return await self._edit_once(
                        team_id, label, edit, conversation_id, user_id, expected_version
                    )
                except VersionConflict:
                    self.counts.conflicts += 1
                    log.warning("memory edit conflict on %s/%s; re-applying", team_id, label)
                    await asyncio.sleep(random.uniform(0, 0.01))
        raise EditError(f"block {label!r} changed too often while editing; try again")

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(BlockVersion).where(BlockVersion.team_id == team_id))

    async def _edit_once(
        self,
        team_id: str,
        label: str,
        edit: Edit,
        conversation_id: str | None,
        user_id: str | None,
        expected_version: int | None = None,
    ) -> EditResult:
        async with self._sessions() as session:
            head = await self._head(session, team_id, label)
            if head is None:
                raise EditError(f"no memory block named {label!r}")
            if expected_version is not None and head.version != expected_version:
                raise EditError(
                    f"block {label!r} changed since version {expected_version}: it is at "
                    f"version {head.version} now; reopen it to edit the newest text"
                )
            new_value = apply_edit(head.value, edit, head.char_limit)
            row = BlockVersion(
                team_id=team_id,
                label=label,
                version=head.version + 1,
                value=new_value,
                char_limit=head.char_limit,
                conversation_id=conversation_id,
                user_id=user_id,
                operation=edit.operation,
            )
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as error:
                raise VersionConflict from error
            return EditResult(_block(row), short_diff(head.value, new_value, label))

    async def _create_default(self, team_id: str, label: str) -> None:
        async with self._sessions() as session:
            session.add(
                BlockVersion(
                    team_id=team_id,
                    label=label,
                    version=1,
                    value=DEFAULT_BLOCKS.get(label, ""),
                    char_limit=self._char_limit,
                    operation="create",
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()

    async def _head(self, session: AsyncSession, team_id: str, label: str) -> Block | None:
        row = await session.scalar(
            select(BlockVersion)
            .where(BlockVersion.team_id == team_id, BlockVersion.label == label)
            .order_by(BlockVersion.version.desc())
            .limit(1)
        )
        return _block(row) if row else None

    async def _heads(self, session: AsyncSession, team_id: str) -> list[Block]:
        newest = (
            select(BlockVersion.label, func.max(BlockVersion.version).label("version"))
            .where(BlockVersion.team_id == team_id)
            .group_by(BlockVersion.label)
            .subquery()
        )
        rows = await session.scalars(
            select(BlockVersion)
            .join(
                newest,
                (BlockVersion.label == newest.c.label) & (BlockVersion.version == newest.c.version),
            )
            .where(BlockVersion.team_id == team_id)
        )
        return [_block(row) for row in rows]


def _display_order(block: Block) -> tuple[int, str]:
    defaults = list(DEFAULT_BLOCKS)
    return (defaults.index(block.label) if block.label in defaults else len(defaults), block.label)


def _block(row: BlockVersion) -> Block:
    return Block(
        label=row.label,
        value=row.value,
        version=row.version,
        char_limit=row.char_limit,
        created_at=row.created_at,
        conversation_id=row.conversation_id,
        user_id=row.user_id,
        operation=row.operation,
    )
