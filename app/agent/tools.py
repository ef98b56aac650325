"""The tools the model may call, their JSON schemas, and how each one runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from app.agent.access import MAX_EDITS_PER_TURN, Access, AccessError
from app.agent.answer_search import search_for_answer
from app.agent.citations import linked_messages, search_result_block, source_title
from app.agent.ports import Source, TurnRequest
from memory.archive import Archive, SearchFilters
from memory.blocks import MemoryBlocks
from memory.edits import Edit, EditError, Insert, Replace, Rethink
from memory.notes import MAX_SOURCES, NoteError, Notes, NoteSource

log = logging.getLogger("lore.tools")

Settled = Callable[[str, str, str], Awaitable[bool]]
"""Whether (team, channel, ts) is archived, once it is no longer being stored."""

TOOLS: list[dict[str, Any]] = [
    {
        "name": "search_conversations",
        "description": (
            "Search every Slack conversation you may see in this workspace (all threads, "
            "channels and your past answers). Returns matching messages with links; cite them."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, in plain words."},
                "channel": {"type": "string", "description": "Only this channel id, e.g. C0123."},
                "user": {"type": "string", "description": "Only messages by this user id."},
                "after": {
                    "type": "string",
                    "description": "On or after this day, YYYY-MM-DD.",
                },
                "before": {"type": "string", "description": "Before this day, YYYY-MM-DD."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20, "default": 8},
            },
            "required": ["query"],
        },
    },
    {
        "name": "memory_insert",
        "description": (
            "Add a line to a memory block. Use it for durable facts people teach you: `org` is "
            "seen by every conversation of this workspace; in a private conversation edits are "
            "kept in its own block, whatever label you name."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "description": "Block label, e.g. org or persona."},
                "text": {"type": "string"},
                "line": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "0-based line; default end.",
                },
            },
            "required": ["label", "text"],
        },
    },
    {
        "name": "memory_replace",
        "description": "Replace text in a memory block; `old` must occur exactly once.",
        "input_schema": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "old": {"type": "string"},
                "new": {"type": "string"},
            },
            "required": ["label", "old", "new"],
        },
    },
    {
        "name": "memory_rethink",
        "description": (
            "Rewrite a whole memory block, e.g. to reorganise or condense it. Rewriting org or "
            "persona needs the person asking to be a workspace admin or owner."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"label": {"type": "string"}, "new_value": {"type": "string"}},
            "required": ["label", "new_value"],
        },
    },
    {
        "name": "note_add",
        "description": (
            "Keep a durable fact as a note, with the messages it comes from. Notes are found by "
            "search_conversations in every conversation that may read those messages, so a "
            "note can hold what a memory block has no room for. One fact per note; all sources "
            "in one channel (add one note per channel). Name each source by a search result's "
            "`source` link, or by channel id and ts; with no sources, the note comes from the "
            "message you are answering. To correct a note, add the new one with `supersedes` "
            "set to the old note's id (shown in its search result), which retracts the old one."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "The fact, in one or two sentences."},
                "sources": {
                    "type": "array",
                    "maxItems": MAX_SOURCES,
                    "items": {
                        "type": "object",
                        "properties": {
                            "link": {"type": "string", "description": "A result's source."},
                            "channel": {"type": "string"},
                            "ts": {"type": "string"},
                        },
                    },
                },
                "supersedes": {"type": "string", "description": "The id of the note replaced."},
            },
            "required": ["text"],
        },
    },
    {
        "name": "note_retract",
        "description": (
            "Retract a note that no longer holds (wrong, outdated, taken back). It stays in "
            "the history but is no longer found. Give its id and a short reason."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["id", "reason"],
        },
    },
]
NOTE_TOOLS = frozenset({"note_add", "note_retract"})


class ToolInputError(ValueError):
    """The model's tool input does not fit the schema."""


@dataclass
class ToolOutcome:
    """A tool_result block for the model, plus the sources it offered."""

    content: str | list[dict[str, Any]]
    is_error: bool = False
    sources: list[Source] = field(default_factory=list)


class ToolRunner:
    """Runs the model's tool calls; `for_turn` gives the runner of one turn."""

    def __init__(
        self,
        archive: Archive,
        blocks: MemoryBlocks,
        notes: Notes | None = None,
        settled: Settled | None = None,
    ) -> None:
        self._archive = archive
        self._blocks = blocks
        self._notes = notes
        self._settled = settled

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools' schemas: the note tools only where notes are kept."""
        return [t for t in TOOLS if self._notes is not None or t["name"] not in NOTE_TOOLS]

    def for_turn(self, request: TurnRequest, access: Access, conversation_id: str) -> TurnTools:
        return TurnTools(
            self._archive,
            self._blocks,
            request,
            access,
            conversation_id,
            notes=self._notes,
            settled=self._settled,
        )


class TurnTools:
    """The tool calls of one turn, under its access value; counts its edits and findings."""

    def __init__(
        self,
        archive: Archive,
        blocks: MemoryBlocks,
        request: TurnRequest,
        access: Access,
        conversation_id: str,
        *,
        notes: Notes | None = None,
        settled: Settled | None = None,
    ) -> None:
        self._archive = archive
        self._blocks = blocks
        self._notes = notes
        self._settled = settled
        self._request = request
        self._access = access
        self._conversation_id = conversation_id
        self.edits = 0
        self.searches = 0
        self.found = 0

    async def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        try:
            if name == "search_conversations":
                return await self._search(tool_input)
            if name in NOTE_TOOLS:
                return await self._note(name, tool_input)
            return await self._edit(name, tool_input)
        except (EditError, ToolInputError) as error:
            return ToolOutcome(f"Error: {error}", is_error=True)

    def _count_edit(self) -> None:
        if self.edits >= MAX_EDITS_PER_TURN:
            raise AccessError(
                f"at most {MAX_EDITS_PER_TURN} memory edits per turn; this one was not made"
            )

    async def _note(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        if self._notes is None:
            raise ToolInputError(f"unknown tool {name!r}")
        self._count_edit()
        written_by = f"conversation:{self._conversation_id}"
        audience = self._access.audience
        team_id = self._request.team_id
        if name == "note_retract":
            note_id = _text(tool_input, "id").strip()
            reason = _text(tool_input, "reason")
            note = await self._notes.retract(
                team_id, note_id, reason=reason, by=written_by, audience=audience
            )
            if note is None:
                raise NoteError(f"there is no note {note_id!r}")
            self.edits += 1
            return ToolOutcome(f"Note {note.id} is retracted: {note.retracted_reason}")
        sources, channel_type = await self._note_sources(tool_input.get("sources"))
        supersedes = tool_input.get("supersedes") or None
        note = await self._notes.add(
            team_id,
            text=_text(tool_input, "text"),
            sources=sources,
            channel_type=channel_type,
            written_by=written_by,
            supersedes=str(supersedes).strip() if supersedes else None,
            audience=audience,
        )
        self.edits += 1
        replaced = f", replacing {note.supersedes}" if note.supersedes else ""
        return ToolOutcome(
            f"Note {note.id} is kept{replaced}, learned from {len(note.sources)} message(s) "
            f"in <#{note.channel_id}>."
        )

    async def _note_sources(self, given: object) -> tuple[list[NoteSource], str]:
        """The archived messages a note names, with their permalinks, and their channel's kind;
        NoteError for one that is not archived or may not be read here."""
        request = self._request
        if given in (None, []):
            wanted = [(request.channel_id, request.ts)]
        elif isinstance(given, list) and len(given) <= MAX_SOURCES:
            wanted = [_source_key(item) for item in given]
        else:
            raise ToolInputError(f"`sources` must be a list of at most {MAX_SOURCES} messages")
        sources: list[NoteSource] = []
        kinds: set[str] = set()
        for channel_id, ts in wanted:
            if self._settled is not None:
                await self._settled(request.team_id, channel_id, ts)
            message = await self._archive.get(request.team_id, channel_id, ts)
            if message is None or not self._access.audience.allows(
                channel_id, message.channel_type
            ):
                raise NoteError(
                    f"no message {ts} in <#{channel_id}> can be read from here; name sources by "
                    "the `source` link of a search result"
                )
            sources.append(NoteSource(channel_id, ts, message.permalink))
            kinds.add(message.channel_type)
        return sources, kinds.pop() if len(kinds) == 1 else request.channel_type

    async def _edit(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        edit = _memory_edit(name, tool_input)
        label = _text(tool_input, "label")
        self._count_edit()
        target = self._access.edit_target(label, edit)
        result = await self._blocks.edit(
            self._request.team_id,
            target,
            edit,
            scope=self._access.memory,
            conversation_id=self._conversation_id,
            user_id=self._request.user_id,
        )
        self.edits += 1
        moved = "" if target == label else f" (edits made here are kept in {target})"
        return ToolOutcome(f"{target} is now version {result.block.version}{moved}.\n{result.diff}")

    async def _search(self, tool_input: dict[str, Any]) -> ToolOutcome:
        query = _text(tool_input, "query")
        limit = max(1, min(20, int(tool_input.get("limit") or 8)))
        channel = tool_input.get("channel") or None
        filters = SearchFilters(
            channels=frozenset([channel]) if channel else None,
            user_id=tool_input.get("user") or None,
            after=_day(tool_input.get("after")),
            before=_day(tool_input.get("before")),
        )
        visible = await search_for_answer(
            self._archive, self._access, self._request, query, filters=filters, limit=limit
        )
        self.searches += 1
        self.found += len(visible)
        if not visible:
            return ToolOutcome("No messages matched.")
        blocks = [search_result_block(hit) for hit in visible]
        sources = [
            Source(b["source"], source_title(hit), hit.message.channel_id, hit.message.ts)
            for b, hit in zip(blocks, visible, strict=True)
        ]
        return ToolOutcome(blocks, sources=sources)


def _source_key(item: object) -> tuple[str, str]:
    """(channel, ts) of one source the model named, by link or by channel and ts."""
    if isinstance(item, dict):
        link = item.get("link")
        if isinstance(link, str) and (found := linked_messages(link)):
            return found[0]
        channel, ts = item.get("channel"), item.get("ts")
        if isinstance(channel, str) and isinstance(ts, str) and channel and ts:
            return channel.strip().lstrip("#"), ts.strip()
    raise ToolInputError(
        'each source is {"link": a search result\'s source} or {"channel": id, "ts": ts}'
    )


def _memory_edit(name: str, tool_input: dict[str, Any]) -> Edit:
    if name == "memory_insert":
        line = tool_input.get("line")
        return Insert(_text(tool_input, "text"), int(line) if line is not None else None)
    if name == "memory_replace":
        return Replace(_text(tool_input, "old"), _text(tool_input, "new", allow_empty=True))
    if name == "memory_rethink":
        return Rethink(_text(tool_input, "new_value", allow_empty=True))
    raise ToolInputError(f"unknown tool {name!r}")


def _text(tool_input: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = tool_input.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ToolInputError(f"`{key}` must be a non-empty string")
    return value


def _day(value: object) -> float | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(str(value)[:10])
    except ValueError as error:
        raise ToolInputError(f"dates must look like YYYY-MM-DD, got {value!r}") from error
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
