"""Notes: durable facts beside the memory blocks, each with the messages it was learned from.

A note carries the access of the one channel all its sources are in: whoever may read a message
of that channel may read the note, nobody else. A note is never changed: a better one supersedes
it (the old one is retracted in the same transaction), and retraction keeps the row, with when,
why and by whom, so the history stays; retracted notes are never searched or shown.

Every write names an `Audience` (which the agent's access rule builds): a note whose channel it
does not allow is refused, as is retracting or superseding such a note.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from memory.audience import Audience
from memory.db import Base, utcnow
from memory.edits import EditError
from memory.embeddings import Embedder

CHANNEL_TYPES = frozenset({"channel", "group", "im", "mpim"})
NOTE_CHAR_LIMIT = 2000
MAX_SOURCES = 20
RETRACTED_BY_DELETION = "every source message was deleted"


class NoteError(EditError):
    """A note write that cannot be applied; the message says why, for the model or a person."""


class NoteRow(Base):
    """One note; retracted notes keep their row."""

    __tablename__ = "notes"
    __table_args__ = (Index("notes_team_channel", "team_id", "channel_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    channel_type: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    written_by: Mapped[str] = mapped_column(String(128))
    learned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    supersedes: Mapped[str | None] = mapped_column(String(40), nullable=True)
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    retracted_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    retracted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class NoteVectorRow(Base):
    """The embedding of one note's text (float32), in the vector space named `space`."""

    __tablename__ = "note_vectors"

    note_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    space: Mapped[str] = mapped_column(String(128))
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class NoteSourceRow(Base):
    """One message a note was learned from; `gone` once that message was deleted."""

    __tablename__ = "note_sources"
    __table_args__ = (Index("note_sources_message", "team_id", "channel_id", "ts"),)

    note_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    permalink: Mapped[str | None] = mapped_column(Text, nullable=True)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)


@dataclass(frozen=True)
class NoteSource:
    """A message a note was learned from."""

    channel_id: str
    ts: str
    permalink: str | None = None


@dataclass(frozen=True)
class Note:
    """A note as stored."""

    id: str
    team_id: str
    channel_id: str
    """The channel whose access the note carries (all its sources are in it)."""
    channel_type: str
    text: str
    sources: tuple[NoteSource, ...]
    written_by: str
    """Who wrote it: "conversation:<id>", "reflection:<run id>", "admin:<user>"."""
    learned_at: datetime
    supersedes: str | None
    retracted_at: datetime | None
    retracted_reason: str | None
    retracted_by: str | None = None

    @property
    def active(self) -> bool:
        return self.retracted_at is None


@dataclass
class NoteCounts:
    """What this store's writes came to since it was opened; read by the metrics."""

    added: int = 0
    retracted: Counter[str] = field(default_factory=Counter)
    """Notes retracted, by why: "retract", "supersede", "deletion"."""
    rejected: int = 0


class Notes:
    """The `notes`, `note_sources` and `note_vectors` tables (SQLite or PostgreSQL).

    With an `embedder`, each note's embedding is stored with it, for `NoteSearch`.
    """

    def __init__(self, engine: AsyncEngine, embedder: Embedder | None = None) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._embedder = embedder
        self.counts = NoteCounts()

    async def add(
        self,
        team_id: str,
        *,
        text: str,
        sources: Sequence[NoteSource],
        channel_type: str,
        written_by: str,
        supersedes: str | None = None,
        audience: Audience | None = None,
    ) -> Note:
        """Store a note learned from `sources` (all in one channel of type `channel_type`); the
        note `supersedes` names, if any, is retracted in the same transaction.

        `audience`: what the writer may read (None: everything); the note's channel and the
        superseded note's must be in it. Raises NoteError with a readable message.
        """
        try:
            return await self._add(
                team_id, text, sources, channel_type, written_by, supersedes, audience
            )
        except NoteError:
            self.counts.rejected += 1
            raise

    async def _add(
        self,
        team_id: str,
        text: str,
        sources: Sequence[NoteSource],
        channel_type: str,
        written_by: str,
        supersedes: str | None,
        audience: Audience | None,
    ) -> Note:
        text = text.strip()
        channel_id = _check(text, sources, channel_type)
        if audience is not None and not audience.allows(channel_id, channel_type):
            raise NoteError(
                f"the messages of channel {channel_id} cannot be read from here, so no note can "
                "be learned from them here"
            )
        unique = list({(s.channel_id, s.ts): s for s in sources}.values())
        now = utcnow()
        row = NoteRow(
            id="N" + uuid.uuid4().hex[:20].upper(),
            team_id=team_id,
            channel_id=channel_id,
            channel_type=channel_type,
            text=text,
            written_by=written_by,
            learned_at=now,
            supersedes=supersedes,
        )
        source_rows = [
            NoteSourceRow(
                note_id=row.id,
                position=position,
                team_id=team_id,
                channel_id=s.channel_id,
                ts=s.ts,
                permalink=s.permalink,
                gone=False,
            )
            for position, s in enumerate(unique)
        ]
        vector = await self._vector(row)
        async with self._sessions.begin() as session:
            if supersedes is not None:
                old = await session.get(NoteRow, supersedes)
                if old is None or old.team_id != team_id:
                    raise NoteError(f"there is no note {supersedes!r} to supersede")
                _check_audience(old, audience, "supersede")
                if not await _retract_row(session, supersedes, now, "superseded", written_by):
                    raise NoteError(
                        f"note {supersedes!r} was already retracted or superseded; "
                        "add the new note without `supersedes`"
                    )
            session.add(row)
            await session.flush()
            session.add_all([*source_rows, *vector])
        self.counts.added += 1
        if supersedes is not None:
            self.counts.retracted["supersede"] += 1
        return _note(row, source_rows)

    async def _vector(self, row: NoteRow) -> list[NoteVectorRow]:
        if self._embedder is None:
            return []
        embedded = (await asyncio.to_thread(self._embedder.embed, [row.text]))[0]
        vector = np.asarray(embedded, dtype=np.float32).tobytes()
        space = self._embedder.name
        return [NoteVectorRow(note_id=row.id, team_id=row.team_id, space=space, vector=vector)]

    async def reembed_some(self, team_id: str, limit: int) -> int:
        """Embed up to limit of the team's active notes whose vector is of another vector
        space (or missing), replacing it; how many (0 once none is left, or without embedder)."""
        if self._embedder is None:
            return 0
        space = self._embedder.name
        current = select(NoteVectorRow.note_id).where(NoteVectorRow.space == space)
        query = (
            select(NoteRow)
            .where(
                NoteRow.team_id == team_id,
                NoteRow.retracted_at.is_(None),
                NoteRow.id.not_in(current),
            )
            .order_by(NoteRow.id)
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
        if not rows:
            return 0
        embedded = await asyncio.to_thread(self._embedder.embed, [row.text for row in rows])
        vectors = [
            NoteVectorRow(
                note_id=row.id,
                team_id=team_id,
                space=space,
                vector=np.asarray(vector, dtype=np.float32).tobytes(),
            )
            for row, vector in zip(rows, embedded, strict=True)
        ]
        async with self._sessions.begin() as session:
            ids = [row.id for row in rows]
            await session.execute(delete(NoteVectorRow).where(NoteVectorRow.note_id.in_(ids)))
            session.add_all(vectors)
        return len(rows)

    async def retract(
        self,
        team_id: str,
        note_id: str,
        *,
        reason: str,
        by: str,
        audience: Audience | None = None,
    ) -> Note | None:
        """Retract a note (kept in history, no longer searched or shown); None if there is no
        such note. A note retracted before is returned as it was.

        `audience`: what the writer may read (None: everything); NoteError if it does not
        allow the note's channel.
        """
        if not reason.strip():
            raise NoteError("say why the note no longer holds (a short reason)")
        async with self._sessions.begin() as session:
            row = await session.get(NoteRow, note_id)
            if row is None or row.team_id != team_id:
                return None
            _check_audience(row, audience, "retract")
            retracted = await _retract_row(session, note_id, utcnow(), reason.strip(), by)
        if retracted:
            self.counts.retracted["retract"] += 1
        return await self.get(team_id, note_id)

    async def get(self, team_id: str, note_id: str) -> Note | None:
        """One note, retracted or not."""
        async with self._sessions() as session:
            row = await session.get(NoteRow, note_id)
            if row is None or row.team_id != team_id:
                return None
            return (await _with_sources(session, [row]))[0]

    async def active(
        self,
        team_id: str,
        *,
        channels: frozenset[str] | None = None,
        audience: Audience | None = None,
    ) -> list[Note]:
        """The notes not retracted, newest first: of `channels` (None: every channel), and of
        those `audience` may read (None: everything)."""
        query = select(NoteRow).where(NoteRow.team_id == team_id, NoteRow.retracted_at.is_(None))
        if channels is not None:
            query = query.where(NoteRow.channel_id.in_(channels))
        async with self._sessions() as session:
            rows = list(await session.scalars(query.order_by(NoteRow.learned_at.desc())))
            rows = [
                r for r in rows if audience is None or audience.allows(r.channel_id, r.channel_type)
            ]
            return await _with_sources(session, rows)

    async def many(self, team_id: str, note_ids: Iterable[str]) -> list[Note]:
        """The notes with these ids (retracted or not), in no particular order."""
        wanted = list(set(note_ids))
        if not wanted:
            return []
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(NoteRow).where(NoteRow.team_id == team_id, NoteRow.id.in_(wanted))
                )
            )
            return await _with_sources(session, rows)

    async def history(self, team_id: str) -> list[Note]:
        """Every note of the workspace, retracted ones too, newest first."""
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(NoteRow)
                    .where(NoteRow.team_id == team_id)
                    .order_by(NoteRow.learned_at.desc())
                )
            )
            return await _with_sources(session, rows)

    async def citing(self, team_id: str, channel_id: str, ts: str) -> list[Note]:
        """The active notes that name the message (channel_id, ts) as a source."""
        cited = select(NoteSourceRow.note_id).where(
            NoteSourceRow.team_id == team_id,
            NoteSourceRow.channel_id == channel_id,
            NoteSourceRow.ts == ts,
        )
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(NoteRow).where(
                        NoteRow.team_id == team_id,
                        NoteRow.retracted_at.is_(None),
                        NoteRow.id.in_(cited),
                    )
                )
            )
            return await _with_sources(session, rows)

    async def source_deleted(
        self, team_id: str, channel_id: str, ts: str, *, by: str = "deletion"
    ) -> list[Note]:
        """Mark the message (channel_id, ts) deleted wherever it is a source; the notes whose
        every source is now deleted are retracted (and returned)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(NoteSourceRow)
                .where(
                    NoteSourceRow.team_id == team_id,
                    NoteSourceRow.channel_id == channel_id,
                    NoteSourceRow.ts == ts,
                )
                .values(gone=True)
            )
            retracted = await self._retract_sourceless(session, team_id, channel_id, by)
        return await self.many(team_id, retracted)

    async def channel_deleted(
        self, team_id: str, channel_id: str, *, by: str, reason: str = RETRACTED_BY_DELETION
    ) -> list[Note]:
        """Every message of the channel is gone: its notes are retracted (and returned)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(NoteSourceRow)
                .where(NoteSourceRow.team_id == team_id, NoteSourceRow.channel_id == channel_id)
                .values(gone=True)
            )
            retracted = await self._retract_sourceless(session, team_id, channel_id, by, reason)
        return await self.many(team_id, retracted)

    async def _retract_sourceless(
        self,
        session: AsyncSession,
        team_id: str,
        channel_id: str,
        by: str,
        reason: str = RETRACTED_BY_DELETION,
    ) -> list[str]:
        kept = select(NoteSourceRow.note_id).where(
            NoteSourceRow.team_id == team_id, NoteSourceRow.gone.is_(False)
        )
        candidates = list(
            await session.scalars(
                select(NoteRow.id).where(
                    NoteRow.team_id == team_id,
                    NoteRow.channel_id == channel_id,
                    NoteRow.retracted_at.is_(None),
                    NoteRow.id.not_in(kept),
                )
            )
        )
        now = utcnow()
        retracted = [
            note_id
            for note_id in candidates
            if await _retract_row(session, note_id, now, reason, by)
        ]
        self.counts.retracted["deletion"] += len(retracted)
        return retracted

    async def set_channel_type(self, team_id: str, channel_id: str, channel_type: str) -> None:
        """The channel became public or private: its notes carry its new access."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(NoteRow)
                .where(NoteRow.team_id == team_id, NoteRow.channel_id == channel_id)
                .values(channel_type=channel_type)
            )

    async def change_mark(self, team_id: str) -> tuple[int, int]:
        """Changes whenever a note is added or retracted: (notes, retracted notes)."""
        async with self._sessions() as session:
            total, retracted = (
                await session.execute(
                    select(func.count(), func.count(NoteRow.retracted_at)).where(
                        NoteRow.team_id == team_id
                    )
                )
            ).one()
        return int(total or 0), int(retracted or 0)

    async def delete_team(self, team_id: str) -> None:
        """Forget every note of the workspace, retracted ones too."""
        async with self._sessions.begin() as session:
            await session.execute(delete(NoteSourceRow).where(NoteSourceRow.team_id == team_id))
            await session.execute(delete(NoteVectorRow).where(NoteVectorRow.team_id == team_id))
            await session.execute(delete(NoteRow).where(NoteRow.team_id == team_id))


def _check(text: str, sources: Sequence[NoteSource], channel_type: str) -> str:
    """The one channel of a note's sources; NoteError when the note cannot be stored."""
    if not text:
        raise NoteError("the note is empty: write the fact it should keep")
    if len(text) > NOTE_CHAR_LIMIT:
        raise NoteError(
            f"the note has {len(text)} characters, over the limit of {NOTE_CHAR_LIMIT}: keep one "
            "fact per note"
        )
    if not sources:
        raise NoteError("a note needs at least one source message (its channel and ts)")
    if len(sources) > MAX_SOURCES:
        raise NoteError(f"a note names at most {MAX_SOURCES} source messages")
    if any(not s.channel_id or not s.ts for s in sources):
        raise NoteError("every source needs its channel and the message's ts")
    channels = {s.channel_id for s in sources}
    if len(channels) > 1:
        raise NoteError(
            f"the sources are in {len(channels)} channels ({', '.join(sorted(channels))}); one "
            "channel per note: add one note per channel"
        )
    if channel_type not in CHANNEL_TYPES:
        raise NoteError(f"unknown channel type {channel_type!r}")
    return channels.pop()


def _check_audience(row: NoteRow, audience: Audience | None, what: str) -> None:
    if audience is not None and not audience.allows(row.channel_id, row.channel_type):
        raise NoteError(f"note {row.id!r} cannot be seen from here, so it cannot {what} it")


async def _retract_row(
    session: AsyncSession, note_id: str, when: datetime, reason: str, by: str
) -> bool:
    """Retract one note unless retracted already; whether this call did it."""
    result = await session.execute(
        update(NoteRow)
        .where(NoteRow.id == note_id, NoteRow.retracted_at.is_(None))
        .values(retracted_at=when, retracted_reason=reason, retracted_by=by)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _with_sources(session: AsyncSession, rows: list[NoteRow]) -> list[Note]:
    if not rows:
        return []
    found = await session.scalars(
        select(NoteSourceRow)
        .where(NoteSourceRow.note_id.in_([r.id for r in rows]))
        .order_by(NoteSourceRow.note_id, NoteSourceRow.position)
    )
    by_note: dict[str, list[NoteSourceRow]] = {}
    for source in found:
        by_note.setdefault(source.note_id, []).append(source)
    return [_note(row, by_note.get(row.id, [])) for row in rows]


def _note(row: NoteRow, sources: Sequence[NoteSourceRow]) -> Note:
    return Note(
        id=row.id,
        team_id=row.team_id,
        channel_id=row.channel_id,
        channel_type=row.channel_type,
        text=row.text,
        sources=tuple(NoteSource(s.channel_id, s.ts, s.permalink) for s in sources),
        written_by=row.written_by,
        learned_at=_aware(row.learned_at),
        supersedes=row.supersedes,
        retracted_at=None if row.retracted_at is None else _aware(row.retracted_at),
        retracted_reason=row.retracted_reason,
        retracted_by=row.retracted_by,
    )


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
