"""The tools the model may call, their JSON schemas, and how each one runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from app.agent.citations import search_result_block, source_title
from app.agent.ports import Source, TurnRequest
from app.agent.privacy import audience_for_answer
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
            "Add a line to a memory block that every conversation in this workspace sees. "
            "Use it for durable facts people teach you."
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
        "description": "Rewrite a whole memory block, e.g. to reorganise or condense it.",
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
    """Runs tool calls for one turn."""

    def __init__(self, archive: Archive, blocks: MemoryBlocks) -> None:
        self._archive = archive
        self._blocks = blocks

    async def run(
        self, name: str, tool_input: dict[str, Any], request: TurnRequest, conversation_id: str
    ) -> ToolOutcome:
        try:
            if name == "search_conversations":
                return await self._search(tool_input, request)
            edit = _memory_edit(name, tool_input)
            label = _text(tool_input, "label")
            result = await self._blocks.edit(
                request.team_id,
                label,
                edit,
                conversation_id=conversation_id,
                user_id=request.user_id,
            )
            return ToolOutcome(f"{label} is now version {result.block.version}.\n{result.diff}")
        except (EditError, ToolInputError) as error:
            return ToolOutcome(f"Error: {error}", is_error=True)

    async def _search(self, tool_input: dict[str, Any], request: TurnRequest) -> ToolOutcome:
        query = _text(tool_input, "query")
        limit = max(1, min(20, int(tool_input.get("limit") or 8)))
        channel = tool_input.get("channel") or None
        filters = SearchFilters(
            channels=frozenset([channel]) if channel else None,
            user_id=tool_input.get("user") or None,
            after=_day(tool_input.get("after")),
            before=_day(tool_input.get("before")),
        )
        hits = await self._archive.search(
            request.team_id,
            query,
            audience=audience_for_answer(request),
            filters=filters,
            limit=limit + 1,
        )
        asked = (request.channel_id, request.ts)  # the question itself is no answer
        visible = [h for h in hits if (h.message.channel_id, h.message.ts) != asked][:limit]
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
