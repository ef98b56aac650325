"""The conversation registry: each Slack thread Lore takes part in is one conversation.

The statements every turn runs (find, open, record a reply) are built once, with bound
parameters: building a statement costs more CPU than running it on SQLite.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from memory.db import ConversationRow, utcnow


@dataclass(frozen=True)
class Conversation:
    id: str
    team_id: str
    channel_id: str
    thread_ts: str
    created_at: datetime
    last_activity_at: datetime
    bot_replied: bool
    answered_ts: str | None = None
    """The message Lore last finished a reply to (see `record_reply`)."""


CONVERSATIONS = ConversationRow.metadata.tables[ConversationRow.__tablename__]
_FIND = select(CONVERSATIONS).where(
    CONVERSATIONS.c.team_id == bindparam("team_id"),
    CONVERSATIONS.c.channel_id == bindparam("channel_id"),
    CONVERSATIONS.c.thread_ts == bindparam("thread_ts"),
)
_OPEN = insert(CONVERSATIONS)
_RECORD_REPLY = (
    update(CONVERSATIONS)
    .where(CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(bot_replied=True, last_activity_at=bindparam("now"), answered_ts=bindparam("asked"))
)


class Conversations:
    """Maps (team, channel, thread_ts) to a stable conversation id."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def find(self, team_id: str, channel_id: str, thread_ts: str) -> Conversation | None:
        """Read on every turn: a Core statement, not through the ORM."""
        params = {"team_id": team_id, "channel_id": channel_id, "thread_ts": thread_ts}
        async with self._engine.connect() as connection:
            row = (await connection.execute(_FIND, params)).first()
        return _conversation(row) if row else None

    async def get(self, team_id: str, conversation_id: str) -> Conversation | None:
        """A conversation by its id (a memory version's origin, say)."""
        async with self._sessions() as session:
            row = await session.scalar(
                select(ConversationRow).where(
                    ConversationRow.team_id == team_id, ConversationRow.id == conversation_id
                )
            )
            return _conversation(row) if row else None

    async def open(self, team_id: str, channel_id: str, thread_ts: str) -> Conversation:
        """The thread's conversation, created on first use (safe under concurrent callers)."""
        found = await self.find(team_id, channel_id, thread_ts)
        if found:
            return found
        now = utcnow()
        opened = Conversation(
            f"conv-{uuid.uuid4().hex[:16]}", team_id, channel_id, thread_ts, now, now, False
        )
        try:
            async with self._engine.begin() as connection:
                await connection.execute(_OPEN, asdict(opened))
        except IntegrityError:  # opened meanwhile by another turn or process: theirs
            pass
        else:
            return opened
        created = await self.find(team_id, channel_id, thread_ts)
        assert created is not None
        return created

    async def record_reply(self, conversation_id: str, asked_ts: str) -> None:
        """Lore's reply to the message `asked_ts` is posted: later messages in the thread
        continue without a mention, and a process that replays the message after a crash
        does not answer it again (`answered`)."""
        params = {"conversation_id": conversation_id, "now": utcnow(), "asked": asked_ts}
        async with self._engine.begin() as connection:
            await connection.execute(_RECORD_REPLY, params)

    async def answered(self, team_id: str, channel_id: str, thread_ts: str, ts: str) -> bool:
        """Whether a reply of Lore's to the thread's message `ts` (or a later one) is posted."""
        found = await self.find(team_id, channel_id, thread_ts)
        answered = found.answered_ts if found is not None else None
        return answered is not None and float(answered) >= float(ts)

    async def recent(self, team_id: str, limit: int = 50) -> list[Conversation]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ConversationRow)
                .where(ConversationRow.team_id == team_id)
                .order_by(ConversationRow.last_activity_at.desc())
                .limit(limit)
            )
            return [_conversation(row) for row in rows]

    async def count(self, team_id: str) -> int:
        async with self._sessions() as session:
            total = await session.scalar(
                select(func.count())
                .select_from(ConversationRow)
                .where(ConversationRow.team_id == team_id)
            )
            return int(total or 0)

    async def by_ids(self, ids: set[str]) -> dict[str, Conversation]:
        """The conversations with these ids (unknown ids are left out)."""
        if not ids:
            return {}
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ConversationRow).where(ConversationRow.id.in_(sorted(ids)))
            )
            return {row.id: _conversation(row) for row in rows}

    async def change_mark(self, team_id: str) -> tuple[int, datetime | None]:
        """Changes whenever a conversation starts or has activity: (count, latest activity)."""
        async with self._sessions() as session:
            count, latest = (
                await session.execute(
                    select(func.count(), func.max(ConversationRow.last_activity_at)).where(
                        ConversationRow.team_id == team_id
                    )
                )
            ).one()
        return int(count or 0), latest

    async def teams(self) -> set[str]:
        """Workspaces that have conversations."""
        async with self._sessions() as session:
            return set(await session.scalars(select(ConversationRow.team_id).distinct()))

    async def delete_team(self, team_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(ConversationRow).where(ConversationRow.team_id == team_id))


def _conversation(row: ConversationRow | Row[Any]) -> Conversation:
    return Conversation(
        id=row.id,
        team_id=row.team_id,
        channel_id=row.channel_id,
        thread_ts=row.thread_ts,
        created_at=row.created_at,
        last_activity_at=row.last_activity_at,
        bot_replied=row.bot_replied,
        answered_ts=row.answered_ts,
    )
