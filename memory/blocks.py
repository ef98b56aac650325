"""Memory blocks: every version kept in SQL; edits serialised by a lock and checked by version.

An edit reads the newest version n, applies the edit rule (`edits.py`) and inserts version n+1.
The (team, label, version) primary key refuses a second n+1, so even when a lock has expired a
stale writer cannot clobber a newer version: it re-reads and re-applies its edit instead.

Every read and edit names a `MemoryScope` (which the agent's access rule builds): a label outside
it is refused, and a `private:*` block is created only when the scope names it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Row, Select, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

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


class ScopeError(EditError):
    """A block outside the scope a read or an edit was given."""


@dataclass(frozen=True)
class MemoryScope:
    """The blocks one request may read and write.

    `may_cut`: its edits may remove more than half of a block's lines (a workspace admin's).
    `MemoryScope.everything()` reads and writes every block; it is for operators' tools (the
    JSON API, the CLI).
    """

    readable: frozenset[str]
    writable: frozenset[str] = frozenset()
    may_cut: bool = False
    every_block: bool = field(default=False, kw_only=True)

    @classmethod
    def everything(cls) -> MemoryScope:
        return cls(frozenset(DEFAULT_BLOCKS), frozenset(DEFAULT_BLOCKS), True, every_block=True)

    def reads(self, label: str) -> bool:
        return self.every_block or label in self.readable

    def writes(self, label: str) -> bool:
        return self.every_block or label in self.writable


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
class BlockSummary:
    """A block as it is now and how many versions it has; `newest` is None for a workspace-wide
    block not created yet (its text would be `DEFAULT_BLOCKS[label]`)."""

    label: str
    newest: Block | None
    versions: int

    @property
    def scoped(self) -> bool:
        return self.label not in DEFAULT_BLOCKS


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
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._locks = locks
        self._char_limit = char_limit
        self.counts = EditCounts()

    async def current(self, team_id: str, scope: MemoryScope) -> list[Block]:
        """The blocks `scope` reads, workspace-wide ones first; those it names are created once.

        Scoped blocks the scope does not name are never included: they stay where they were
        written.
        """
        wanted = [label for label in _ordered(scope.readable) if scope.reads(label)]
        async with self._engine.connect() as connection:
            blocks = await self._heads(connection, team_id)
        missing = [label for label in wanted if label not in {b.label for b in blocks}]
        for label in missing:
            await self._create_default(team_id, label)
        if missing:
            async with self._engine.connect() as connection:
                blocks = await self._heads(connection, team_id)
        shown = (b for b in blocks if scope.every_block or b.label in wanted)
        return sorted(shown, key=_display_order)

    async def get(self, team_id: str, label: str, scope: MemoryScope) -> Block | None:
        """The newest version of one block (a workspace-wide one is created on first use)."""
        _readable(scope, label)
        if label in DEFAULT_BLOCKS:
            named = MemoryScope(frozenset({label}))
            return next((b for b in await self.current(team_id, named) if b.label == label), None)
        async with self._sessions() as session:
            return await self._head(session, team_id, label)

    async def history(self, team_id: str, label: str, scope: MemoryScope) -> list[Block]:
        """Every stored version of one block, oldest first."""
        _readable(scope, label)
        async with self._sessions() as session:
            rows = await session.scalars(
                select(BlockVersion)
                .where(BlockVersion.team_id == team_id, BlockVersion.label == label)
                .order_by(BlockVersion.version)
            )
            return [_block(row) for row in rows]

    async def summaries(self, team_id: str, scope: MemoryScope) -> list[BlockSummary]:
        """The blocks `scope` reads as they are now, with their number of versions, without
        creating any: workspace-wide ones first (also when not created yet), then scoped ones."""
        async with self._sessions() as session:
            heads = {b.label: b for b in await self._heads(session, team_id)}
            counted = await session.execute(
                select(BlockVersion.label, func.count())
                .where(BlockVersion.team_id == team_id)
                .group_by(BlockVersion.label)
            )
            counts = {label: int(count) for label, count in counted.all()}
        labels = {*DEFAULT_BLOCKS, *heads} if scope.every_block else set(scope.readable)
        shown = [label for label in labels if scope.reads(label)]
        shown = [label for label in shown if label in heads or label in DEFAULT_BLOCKS]
        return [
            BlockSummary(label, heads.get(label), counts.get(label, 0))
            for label in sorted(shown, key=_label_order)
        ]

    async def change_mark(self, team_id: str) -> tuple[int, datetime | None]:
        """Changes whenever a version is stored: (versions, time of the newest)."""
        async with self._sessions() as session:
            count, newest = (
                await session.execute(
                    select(func.count(), func.max(BlockVersion.created_at)).where(
                        BlockVersion.team_id == team_id
                    )
                )
            ).one()
        return int(count or 0), newest

    async def teams(self) -> set[str]:
        """Workspaces that have memory blocks."""
        async with self._sessions() as session:
            return set(await session.scalars(select(BlockVersion.team_id).distinct()))

    async def edit(
        self,
        team_id: str,
        label: str,
        edit: Edit,
        *,
        scope: MemoryScope,
        conversation_id: str | None = None,
        user_id: str | None = None,
        expected_version: int | None = None,
    ) -> EditResult:
        """Apply `edit` to the newest version of `label`, storing version n+1.

        Raises EditError when the edit does not apply (a block outside `scope`, text not found,
        more than half of the block's lines removed without `scope.may_cut`, ...), or when
        `expected_version` is given and the newest version is another one.
        """
        try:
            if not scope.writes(label):
                raise ScopeError(f"the memory block {label!r} cannot be changed from here")
            result = await self._edit_locked(
                team_id, label, edit, scope.may_cut, conversation_id, user_id, expected_version
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
        may_cut: bool,
        conversation_id: str | None,
        user_id: str | None,
        expected_version: int | None,
    ) -> EditResult:
        if label not in DEFAULT_BLOCKS and not label.startswith(SCOPED_PREFIX):
            raise EditError(f"no memory block named {label!r}")
        await self.current(team_id, MemoryScope(frozenset({label})))  # created on first use
        async with self._locks.hold(team_id):
            for _attempt in range(MAX_CAS_ATTEMPTS):
                try:
                    return await self._edit_once(
                        team_id, label, edit, may_cut, conversation_id, user_id, expected_version
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
        may_cut: bool,
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
            if not may_cut and cuts_most_lines(head.value, new_value):
                raise ScopeError(
                    f"this edit would remove more than half of the lines of {label!r}; only a "
                    "workspace admin or owner can ask for that"
                )
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

    async def _heads(self, db: AsyncSession | AsyncConnection, team_id: str) -> list[Block]:
        """The newest version of each block: a Core statement built once (read on every turn)."""
        return [_block(row) for row in await db.execute(_HEADS, {"team_id": team_id})]


def cuts_most_lines(before: str, after: str) -> bool:
    """Whether `after` has lost more than half of the non-empty lines of `before`."""
    old = [line for line in before.splitlines() if line.strip()]
    new = [line for line in after.splitlines() if line.strip()]
    return len(old) - len(new) > len(old) / 2


def _readable(scope: MemoryScope, label: str) -> None:
    if not scope.reads(label):
        raise ScopeError(f"the memory block {label!r} cannot be read from here")


def _label_order(label: str) -> tuple[int, str]:
    defaults = list(DEFAULT_BLOCKS)
    return (defaults.index(label) if label in defaults else len(defaults), label)


def _ordered(labels: frozenset[str]) -> list[str]:
    return sorted(labels, key=_label_order)


def _display_order(block: Block) -> tuple[int, str]:
    return _label_order(block.label)


VERSIONS = BlockVersion.metadata.tables[BlockVersion.__tablename__]


def _heads_statement() -> Select[Any]:
    """The newest version of each block of the team bound to `team_id`."""
    team: BindParameter[str] = bindparam("team_id")
    newest = (
        select(VERSIONS.c.label, func.max(VERSIONS.c.version).label("version"))
        .where(VERSIONS.c.team_id == team)
        .group_by(VERSIONS.c.label)
        .subquery()
    )
    return (
        select(VERSIONS)
        .join(
            newest,
            (VERSIONS.c.label == newest.c.label) & (VERSIONS.c.version == newest.c.version),
        )
        .where(VERSIONS.c.team_id == team)
    )


_HEADS = _heads_statement()


def _block(row: BlockVersion | Row[Any]) -> Block:
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
