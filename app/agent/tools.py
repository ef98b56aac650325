"""The tools the model may call, their JSON schemas, and how each one runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from app.agent.access import MAX_EDITS_PER_TURN, Access, AccessError
from app.agent.answer_search import search_for_answer
from app.agent.citations import search_result_block, source_title
from app.agent.ports import Source, TurnRequest
from memory.archive import Archive, SearchFilters
from memory.blocks import MemoryBlocks
from memory.edits import Edit, EditError, Insert, Replace, Rethink

log = logging.getLogger("lore.tools")

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
]


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

    def __init__(self, archive: Archive, blocks: MemoryBlocks) -> None:
        self._archive = archive
        self._blocks = blocks

    def for_turn(self, request: TurnRequest, access: Access, conversation_id: str) -> TurnTools:
        return TurnTools(self._archive, self._blocks, request, access, conversation_id)


class TurnTools:
    """The tool calls of one turn, under its access value; counts its edits and findings."""

    def __init__(
        self,
        archive: Archive,
        blocks: MemoryBlocks,
        request: TurnRequest,
        access: Access,
        conversation_id: str,
    ) -> None:
        self._archive = archive
        self._blocks = blocks
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
            return await self._edit(name, tool_input)
        except (EditError, ToolInputError) as error:
            return ToolOutcome(f"Error: {error}", is_error=True)

    async def _edit(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        edit = _memory_edit(name, tool_input)
        label = _text(tool_input, "label")
        if self.edits >= MAX_EDITS_PER_TURN:
            raise AccessError(
                f"at most {MAX_EDITS_PER_TURN} memory edits per turn; this one was not made"
            )
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
