"""Applying a reflection's operations through the same memory rules as a turn.

The operations (the model's tool calls) are stored with the run before any is applied
(`memory.reflection_state`), and applied one by one; each is checked again here, so a run
finished after a restart obeys the same rules. A run's access is rebuilt from its scope: public
channels, or one private conversation, or one conversation with outsiders. An operation that
breaks a rule is skipped (logged and counted), the others still apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from app.agent.access import Access
from memory.blocks import MemoryBlocks
from memory.edits import Edit, EditError, Insert, Replace
from memory.notes import NoteError, Notes, NoteSource
from memory.reflection_state import ReflectionState, Run

log = logging.getLogger("lore.reflection")

MAX_BLOCK_EDITS = 2
"""Core block edits one reflection may make: sparingly."""


@dataclass(frozen=True)
class ReadMessage:
    """A message the run read: only these may be a note's sources."""

    channel_id: str
    channel_type: str
    ts: str
    permalink: str | None


def run_scope(
    own_channel: str | None, read: list[ReadMessage], *, outsiders: bool = False
) -> dict[str, Any]:
    """What a run may touch, stored with it."""
    return {
        "channel": own_channel,
        "outsiders": outsiders,
        "read": [[m.channel_id, m.channel_type, m.ts, m.permalink] for m in read],
    }


def run_access(run: Run) -> Access:
    return Access.for_reflection(
        run.team_id, run.scope.get("channel"), outsiders=bool(run.scope.get("outsiders"))
    )


def written_by(run_id: str) -> str:
    return f"reflection:{run_id}"


class Operations:
    """Applies stored runs to the notes and the memory blocks."""

    def __init__(
        self,
        state: ReflectionState,
        notes: Notes,
        blocks: MemoryBlocks,
    ) -> None:
        self._state = state
        self._notes = notes
        self._blocks = blocks
        self.rejected = 0
        """Operations skipped for breaking a rule, since start."""

    async def apply(self, run: Run) -> None:
        """Apply what is left of `run` and mark it finished."""
        access = run_access(run)
        read = {
            (channel, ts): ReadMessage(channel, kind, ts, permalink)
            for channel, kind, ts, permalink in run.scope.get("read", [])
        }
        edits = sum(1 for op in run.operations[: run.applied] if op["name"].startswith("memory_"))
        for index in range(run.applied, len(run.operations)):
            operation = run.operations[index]
            name, given = operation.get("name"), operation.get("input") or {}
            tag = f"{written_by(run.id)}:{index}"
            try:
                if name == "note_add":
                    await self._add(run, access, read, given)
                elif name == "note_retract":
                    await self._retract(run, access, given)
                elif name in ("memory_insert", "memory_replace"):
                    edits += 1
                    if edits > MAX_BLOCK_EDITS:
                        raise EditError(f"at most {MAX_BLOCK_EDITS} block edits per reflection")
                    await self._edit(run, access, name, given, tag)
                else:
                    raise EditError(f"unknown operation {name!r}")
            except (EditError, KeyError, TypeError, ValueError) as error:
                self.rejected += 1
                log.info("reflection %s: %s skipped: %s", run.id, name, error)
            await self._state.applied(run.id, index + 1)
        await self._state.finish(run.id)

    async def _add(
        self,
        run: Run,
        access: Access,
        read: dict[tuple[str, str], ReadMessage],
        given: dict[str, Any],
    ) -> None:
        text = str(given["text"]).strip()
        cited = [(str(s["channel"]), str(s["ts"])) for s in given["sources"]]
        unread = [key for key in cited if key not in read]
        if not cited or unread:
            raise NoteError(f"sources must be messages of the threads read, not {unread}")
        first = read[cited[0]]
        for note in await self._notes.citing(run.team_id, first.channel_id, first.ts):
            if note.written_by == written_by(run.id) and note.text == text:
                return  # applied before a restart
        supersedes = given.get("supersedes") or None
        if supersedes is not None:
            await self._owned(run, access, str(supersedes))
        await self._notes.add(
            run.team_id,
            text=text,
            sources=[NoteSource(read[k].channel_id, read[k].ts, read[k].permalink) for k in cited],
            channel_type=first.channel_type,
            written_by=written_by(run.id),
            supersedes=str(supersedes) if supersedes else None,
            audience=access.audience,
        )

    async def _retract(self, run: Run, access: Access, given: dict[str, Any]) -> None:
        note_id = str(given["id"])
        await self._owned(run, access, note_id)
        await self._notes.retract(
            run.team_id,
            note_id,
            reason=str(given["reason"]),
            by=written_by(run.id),
            audience=access.audience,
        )

    async def _owned(self, run: Run, access: Access, note_id: str) -> None:
        """A reflection changes only notes of what it covers: public channels' notes, or its
        private conversation's (reading a public note does not let a private one replace it)."""
        note = await self._notes.get(run.team_id, note_id)
        if note is None:
            raise NoteError(f"there is no note {note_id!r}")
        private = run.scope.get("channel")
        mine = note.channel_id == private if private else note.channel_type == "channel"
        if not mine or not access.audience.allows(note.channel_id, note.channel_type):
            raise NoteError(f"note {note_id!r} cannot be changed from here")

    async def _edit(
        self, run: Run, access: Access, name: str, given: dict[str, Any], tag: str
    ) -> None:
        edit: Edit = (
            Insert(str(given["text"]))
            if name == "memory_insert"
            else Replace(str(given["old"]), str(given["new"]))
        )
        target = access.edit_target(str(given["label"]), edit)
        history = await self._blocks.history(run.team_id, target, access.memory)
        if any(version.conversation_id == tag for version in history):
            return  # applied before a restart
        await self._blocks.edit(run.team_id, target, edit, scope=access.memory, conversation_id=tag)
