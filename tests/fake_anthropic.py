"""A fake Anthropic Messages API: a real local HTTP server for tests and benchmarks.

The official ``anthropic`` SDK talks to it unchanged through ``base_url``::

    fake = FakeAnthropic()
    await fake.start()
    client = anthropic.AsyncAnthropic(api_key="test-key", base_url=fake.base_url)
    fake.script(
        reply(tool_use("search_conversations", {"query": "deploy freeze"})),
        reply(text("The freeze starts Friday.", citations=[0])),
    )
    ...
    await fake.stop()

Served: ``POST /v1/messages`` (JSON or, with ``"stream": true``, Server-Sent Events in
Anthropic's event order) and ``POST /v1/messages/count_tokens`` (a chars/4 estimate).

Each ``/v1/messages`` request that passes validation consumes one script item, in order
(``script()``); when the queue is empty the ``respond_with()`` responder answers; when there
is neither, the fake answers **HTTP 500 api_error "fake anthropic: no scripted reply"** with
``x-should-retry: false``, so a test that forgot to script fails loudly and at once (the SDK
obeys that header and does not retry).

``script_model(model, ...)`` and ``respond_to_model(model, fn)`` answer the requests naming
``model`` from a queue of their own (a background job's calls, scripted apart from the turns');
``requests_for(model)`` lists them.

Validation mirrors the real API where cheap (401/400 with Anthropic's error JSON): API key,
``anthropic-version``, required fields, role order, tool_use/tool_result pairing, empty text,
cache_control shape and count, tool definitions, search_result shape. A request that fails
validation is recorded in ``requests`` but does not consume a script item. Mistakes in the
*script* (citing a search result the request does not hold, a tool_use for a tool the request
did not declare, a tool input missing a required field) are answered with HTTP 400
``invalid_request_error`` whose message starts with "fake anthropic:"; such a request has
consumed its script item.

Usage: ``input_tokens``, ``cache_creation_input_tokens`` and ``cache_read_input_tokens`` come
from ``PromptCache`` (a prefix up to a ``cache_control`` breakpoint, seen within five minutes, is
read from cache, else written, as the real API reports it), with tokens counted
deterministically as each prompt block's JSON characters over 4 (``prompt_blocks``);
``output_tokens`` is the reply's characters over 4. A script item's ``usage`` overrides them.

Notes:
- The API key is accepted from ``x-api-key`` or ``Authorization: Bearer`` (anthropic SDK 2.x
  sends ``api_key`` as a bearer token).
- ``text(..., citations=[i])``: ``i`` counts every ``search_result`` block in the request, in
  order, across all messages (top level and inside tool_result contents), like the real
  ``search_result_index``. The cited result must set ``"citations": {"enabled": true}``.
  ``end_block_index`` is exclusive (one cited block: start 0, end 1), as the SDK documents.
- Script items are consumed when a request is served, so a ``delay()`` whose client timed out
  and retried has still been used up; concurrent requests take items in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import math
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import anthropic
from aiohttp import web

__all__ = [
    "Delay",
    "Disconnect",
    "ErrorReply",
    "FakeAnthropic",
    "PromptCache",
    "Reply",
    "Responder",
    "ScriptItem",
    "StreamError",
    "TextSpec",
    "ToolUseSpec",
    "delay",
    "disconnect",
    "error",
    "estimate_input_tokens",
    "prompt_blocks",
    "reply",
    "stream_error",
    "text",
    "tool_use",
]

Json: TypeAlias = dict[str, Any]
CitationRef: TypeAlias = int | tuple[int, int, int]
"""A citation: a search_result index (cites its first content block), or
``(search_result_index, start_block_index, end_block_index)`` with an exclusive end."""

_ALNUM = string.ascii_letters + string.digits

# HTTP status of each Anthropic error type (used where only a type is given).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

MAX_CACHE_BREAKPOINTS = 4
USAGE = web.RequestKey("fake_anthropic_usage", dict)
"""The usage a served response reported, on its aiohttp request (for subclasses)."""
MAX_BODY_BYTES = 32 * 1024 * 1024
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _rand(prefix: str, n: int = 24) -> str:
    """Return ``prefix`` followed by ``n`` random alphanumerics."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))


# --------------------------------------------------------------------------- script items


@dataclass(frozen=True)
class TextSpec:
    """A text content block to answer with."""

    text: str
    citations: tuple[CitationRef, ...] | None = None


@dataclass(frozen=True)
class ToolUseSpec:
    """A tool_use content block to answer with."""

    name: str
    input: dict[str, Any]
    id: str


BlockSpec: TypeAlias = TextSpec | ToolUseSpec


@dataclass(frozen=True)
class Reply:
    """One successful Message; ``chunk_delay`` sleeps between SSE events when streamed."""

    blocks: tuple[BlockSpec, ...]
    stop_reason: str | None = None
    usage: Mapping[str, int] | None = None
    chunk_delay: float = 0.0


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error answer with Anthropic's error body."""

    status: int
    type: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` before answering with ``then``."""

    seconds: float
    then: ScriptItem


@dataclass(frozen=True)
class StreamError:
    """A mid-stream ``event: error`` after streaming ``partial`` (if any).

    To a non-streaming request it is a plain HTTP error of the type's status.
    """

    type: str
    message: str
    partial: Reply | None = None


@dataclass(frozen=True)
class Disconnect:
    """The connection is cut (no HTTP answer, or a stream cut off after ``partial``'s blocks)."""

    partial: Reply | None = None


ScriptItem: TypeAlias = Reply | ErrorReply | Delay | StreamError | Disconnect
Responder: TypeAlias = Callable[[Json], ScriptItem | Awaitable[ScriptItem]]


def text(s: str, citations: Sequence[CitationRef] | None = None) -> TextSpec:
    """A text block; ``citations`` index the request's ``search_result`` blocks.

    Indexes count every ``search_result`` block in the request in order (top-level ones and
    those inside tool_result contents, across all messages), as the real API's
    ``search_result_index`` does.
    """
    return TextSpec(s, tuple(citations) if citations is not None else None)


def tool_use(name: str, input: Mapping[str, Any], id: str | None = None) -> ToolUseSpec:
    """A tool_use block; ``id`` defaults to a fresh ``toolu_...``."""
    return ToolUseSpec(name, dict(input), id or _rand("toolu_01", 22))


def reply(
    *blocks: BlockSpec,
    stop_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    chunk_delay: float = 0.0,
) -> Reply:
    """One Message; ``stop_reason`` defaults to "tool_use" if any block is tool_use, else
    "end_turn"; ``usage`` overrides the estimated usage fields."""
    return Reply(tuple(blocks), stop_reason, dict(usage) if usage else None, chunk_delay)


def error(status: int, type: str, message: str, *, retry_after: float | None = None) -> ErrorReply:
    """An HTTP error, e.g. ``error(529, "overloaded_error", "Overloaded")``; ``retry_after``
    (seconds) adds a ``retry-after`` header, which the SDK honours."""
    return ErrorReply(status, type, message, retry_after)


def delay(seconds: float, then: ScriptItem) -> Delay:
    """Sleep before answering with ``then`` (to provoke client timeouts)."""
    return Delay(seconds, then)


def stream_error(
    type: str = "overloaded_error", message: str = "Overloaded", partial: Reply | None = None
) -> StreamError:
    """An ``event: error`` in the middle of a stream, after ``partial``'s blocks (if any)."""
    return StreamError(type, message, partial)


def disconnect(partial: Reply | None = None) -> Disconnect:
    """Cut the connection: before any answer, or (streaming) after ``partial``'s blocks."""
    return Disconnect(partial)


# --------------------------------------------------------------------------- validation


class ApiError(Exception):
    """An error answered as Anthropic's error JSON."""

    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def _check_auth(headers: Mapping[str, str], api_key: str | None) -> None:
    """Require an API key (x-api-key or bearer token) and anthropic-version."""
    key = headers.get("x-api-key")
    bearer = headers.get("authorization", "")
    if not key and bearer.lower().startswith("bearer "):
        key = bearer[7:].strip()
    if not key:
        raise ApiError(401, "authentication_error", "x-api-key header is required")
    if api_key is not None and key != api_key:
        raise ApiError(401, "authentication_error", "invalid x-api-key")
    if not headers.get("anthropic-version"):
        raise _invalid("anthropic-version: header is required")


def _blocks(content: Any) -> list[Any]:
    """Content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _check_text(block: Json, where: str) -> None:
    if not isinstance(block.get("text"), str):
        raise _invalid(f"{where}.text: Field required")
    if not block["text"].strip():
        raise _invalid(f"{where}: text content blocks must contain non-whitespace text")


def _check_cache_control(value: Any, where: str) -> int:
    """Validate a cache_control value; return 1 if it is a breakpoint, else 0."""
    if value is None:
        return 0
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise _invalid(f"{where}.cache_control.type: Input should be 'ephemeral'")
    ttl = value.get("ttl")
    if ttl is not None and ttl not in ("5m", "1h"):
        raise _invalid(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    return 1


def _check_search_result(block: Json, where: str) -> None:
    for name in ("source", "title"):
        if not isinstance(block.get(name), str):
            raise _invalid(f"{where}.{name}: Field required")
    content = block.get("content")
    if not isinstance(content, list) or not content:
        raise _invalid(f"{where}.content: search_result content must be a non-empty list")
    for j, sub in enumerate(content):
        if not isinstance(sub, dict) or sub.get("type") != "text":
            raise _invalid(f"{where}.content.{j}: search_result content must be text blocks")
        _check_text(sub, f"{where}.content.{j}")


def search_results(body: Json) -> list[Json]:
    """Every ``search_result`` block of a request, in the order the API indexes them."""
    found: list[Json] = []
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        for block in _blocks(msg.get("content")):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "search_result":
                found.append(block)
            elif block.get("type") == "tool_result":
                for sub in _blocks(block.get("content")):
                    if isinstance(sub, dict) and sub.get("type") == "search_result":
                        found.append(sub)
    return found


def _tools_by_name(body: Json) -> dict[str, Json]:
    tools = body.get("tools") or []
    return {t["name"]: t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}


def validate_request(body: Json) -> None:
    """Raise ApiError(400) where the real Messages API would reject ``body``."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _invalid(f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise _invalid("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _invalid("stream: Input should be a valid boolean")
    breakpoints = 0

    system = body.get("system")
    if system is not None:
        if isinstance(system, list):
            for i, block in enumerate(system):
                if not isinstance(block, dict) or block.get("type") != "text":
                    raise _invalid(f"system.{i}.type: Input should be 'text'")
                _check_text(block, f"system.{i}")
                breakpoints += _check_cache_control(block.get("cache_control"), f"system.{i}")
        elif not isinstance(system, str):
            raise _invalid("system: Input should be a valid string or list of text blocks")

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        seen: set[str] = set()
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _invalid(f"tools.{i}.name: Field required")
            name = tool["name"]
            if tool.get("type") in (None, "custom"):
                if not _TOOL_NAME.match(name):
                    raise _invalid(
                        f"tools.{i}.custom.name: String should match pattern '{_TOOL_NAME.pattern}'"
                    )
                schema = tool.get("input_schema")
                if not isinstance(schema, dict) or schema.get("type") != "object":
                    raise _invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
            if name in seen:
                raise _invalid("tools: Tool names must be unique.")
            seen.add(name)
            breakpoints += _check_cache_control(tool.get("cache_control"), f"tools.{i}")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        if choice.get("name") not in _tools_by_name(body):
            raise _invalid(f"tool_choice.name: tool {choice.get('name')!r} is not in tools")

    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    prev_role: str | None = None
    pending_tool_ids: list[str] = []  # tool_use ids of the previous assistant message
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _invalid('messages: first message must use the "user" role')
        if role == prev_role:
            raise _invalid(
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        content = msg.get("content")
        if not isinstance(content, str | list):
            raise _invalid(f"messages.{i}.content: Field required")
        is_last = i == len(messages) - 1
        if not content and not (is_last and role == "assistant"):
            raise _invalid(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        if isinstance(content, str) and not (is_last and role == "assistant"):
            if not content.strip():
                raise _invalid(
                    f"messages.{i}: text content blocks must contain non-whitespace text"
                )
        answered: list[str] = []
        tool_use_ids: list[str] = []
        seen_other = False
        blocks = content if isinstance(content, list) else []
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise _invalid(f"{where}.type: Field required")
            btype = block["type"]
            breakpoints += _check_cache_control(block.get("cache_control"), where)
            if btype == "text":
                _check_text(block, where)
            elif btype == "search_result":
                _check_search_result(block, where)
            elif btype == "tool_use":
                if role != "assistant":
                    raise _invalid(f"{where}: `tool_use` blocks can only be in assistant messages")
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    raise _invalid(f"{where}: tool_use blocks need an id and a name")
                if not isinstance(block.get("input"), dict):
                    raise _invalid(f"{where}.input: Input should be a valid dictionary")
                tool_use_ids.append(block["id"])
            elif btype == "tool_result":
                if role != "user":
                    raise _invalid(f"{where}: `tool_result` blocks can only be in user messages")
                if seen_other:
                    raise _invalid(
                        f"messages.{i}: `tool_result` blocks must come first in the content "
                        "array, before any other content"
                    )
                tid = block.get("tool_use_id")
                if tid not in pending_tool_ids:
                    raise _invalid(
                        f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tid}. Each `tool_result` block must have a corresponding `tool_use` "
                        "block in the previous message."
                    )
                answered.append(tid)
                inner = block.get("content")
                if inner is not None and not isinstance(inner, str | list):
                    raise _invalid(f"{where}.content: Input should be a string or a list")
                for k, sub in enumerate(inner if isinstance(inner, list) else []):
                    sub_where = f"{where}.content.{k}"
                    if not isinstance(sub, dict) or not isinstance(sub.get("type"), str):
                        raise _invalid(f"{sub_where}.type: Field required")
                    breakpoints += _check_cache_control(sub.get("cache_control"), sub_where)
                    if sub["type"] == "text":
                        _check_text(sub, sub_where)
                    elif sub["type"] == "search_result":
                        _check_search_result(sub, sub_where)
            if btype != "tool_result":
                seen_other = True
        if pending_tool_ids:
            missing = [t for t in pending_tool_ids if t not in answered]
            if missing:
                raise _invalid(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
        pending_tool_ids = tool_use_ids
        prev_role = role
    if pending_tool_ids:
        # A final assistant message with tool_use: the answer can never be sent.
        raise _invalid(
            f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
            f"blocks immediately after: {', '.join(pending_tool_ids)}. Each `tool_use` block "
            "must have a corresponding `tool_result` block in the next message."
        )
    last = messages[-1]
    if last["role"] == "assistant":
        tail = _blocks(last["content"])
        if tail and isinstance(tail[-1], dict) and tail[-1].get("type") == "text":
            if tail[-1].get("text", "") != tail[-1].get("text", "").rstrip():
                raise _invalid("final assistant content cannot end with trailing whitespace")

    enabled = {
        bool((sr.get("citations") or {}).get("enabled", False)) for sr in search_results(body)
    }
    if len(enabled) > 1:
        raise _invalid(
            "search_result blocks must either all have citations enabled or all have them disabled"
        )
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise _invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )


# --------------------------------------------------------------------------- rendering


def estimate_input_tokens(body: Json) -> int:
    """The input token count: each prompt block's JSON characters over 4, rounded up, plus
    the tool-use system prompt when tools are given (see ``prompt_blocks``)."""
    return max(1, sum(block.tokens for block in prompt_blocks(body)))


# --------------------------------------------------------------------------- prompt caching

# The system prompt the real API adds when tools are given (Claude 4 models, tool_choice auto
# or none; Anthropic's tool-use pricing table), counted once, before the tools.
TOOL_PROMPT_TOKENS = 346
# Claude Sonnet 4.x and Opus 4/4.1 cache a prefix of at least 1024 tokens (Haiku 4.5 and
# Opus 4.5/4.6: 4096); a shorter marked prefix is neither written nor read, silently.
MIN_CACHEABLE_TOKENS = 1024
CACHE_TTL = 300.0  # "ephemeral" without ttl: 5 minutes, refreshed by each read
CACHE_LOOKBACK = 20  # block boundaries before a breakpoint checked for an earlier entry


@dataclass(frozen=True)
class PromptBlock:
    """One block of the prompt in cache order (tools, system, messages): its token count,
    whether it carries a breakpoint, and a hash of the prompt up to and including it."""

    tokens: int
    breakpoint: bool
    prefix: str


def _canonical(block: Any) -> Any:
    """A block as it enters the cache key: without cache_control, strings as text blocks."""
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if isinstance(block, dict):
        return {k: _canonical(v) for k, v in block.items() if k != "cache_control"}
    if isinstance(block, list):
        return [_canonical(v) for v in block]
    return block


def _is_breakpoint(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    if block.get("cache_control") is not None:
        return True
    inner = block.get("content")
    return (
        block.get("type") == "tool_result"
        and isinstance(inner, list)
        and any(isinstance(sub, dict) and sub.get("cache_control") is not None for sub in inner)
    )


def prompt_blocks(body: Json) -> list[PromptBlock]:
    """The request's prompt as blocks in the API's cache order: the tool-use system prompt
    (when there are tools), each tool, each system block, each message's content blocks.
    A block costs ceil(len(its JSON) / 4) tokens; the hash chain starts from the model."""
    parts: list[tuple[str, Any, bool]] = []  # (where, block, breakpoint)
    tools = body.get("tools") or []
    parts.extend(("tools", tool, _is_breakpoint(tool)) for tool in tools)
    system = body.get("system")
    parts.extend(("system", block, _is_breakpoint(block)) for block in _blocks(system))
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        parts.extend((role, b, _is_breakpoint(b)) for b in _blocks(message.get("content")))
    chain = hashlib.sha256(str(body.get("model")).encode())
    blocks = [PromptBlock(TOOL_PROMPT_TOKENS, False, chain.hexdigest())] if tools else []
    for where, raw, marked in parts:
        canonical = json.dumps(_canonical(raw), ensure_ascii=False, sort_keys=True)
        chain.update(f"\x00{where}\x00{canonical}".encode())
        blocks.append(PromptBlock(math.ceil(len(canonical) / 4), marked, chain.hexdigest()))
    return blocks


class PromptCache:
    """The API's prompt cache, as the usage fields report it.

    Each breakpoint's prefix (everything up to and including the marked block, in the order
    tools, system, messages) is written once it is at least ``min_tokens`` long, and lives
    ``ttl`` seconds from its last write or read. A request reads the longest cached prefix
    ending at one of its breakpoints or at one of the ``lookback`` block boundaries before
    each; it writes (``cache_creation_input_tokens``) from there up to its last breakpoint;
    the rest is ``input_tokens``. Tokens are counted as in ``prompt_blocks``.
    """

    def __init__(
        self,
        *,
        ttl: float = CACHE_TTL,
        min_tokens: int = MIN_CACHEABLE_TOKENS,
        lookback: int = CACHE_LOOKBACK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.min_tokens = min_tokens
        self.lookback = lookback
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def clear(self) -> None:
        self._expiry.clear()

    def usage(self, body: Json) -> dict[str, int]:
        """The input usage of ``body``, reading and writing the cache as the API does."""
        blocks = prompt_blocks(body)
        totals = list(_running_sums(b.tokens for b in blocks))
        now = self._clock()
        self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        marked = [i for i, b in enumerate(blocks) if b.breakpoint]
        hit = -1
        for end in marked:
            for i in range(end, max(-1, end - self.lookback), -1):
                if blocks[i].prefix in self._expiry:
                    hit = max(hit, i)
                    break
        read = totals[hit] if hit >= 0 else 0
        if hit >= 0:
            self._expiry[blocks[hit].prefix] = now + self.ttl
        created = 0
        last = marked[-1] if marked else -1
        if last > hit and totals[last] >= self.min_tokens:
            created = totals[last] - read
        for end in marked:
            if totals[end] >= self.min_tokens:
                self._expiry[blocks[end].prefix] = now + self.ttl
        total = totals[-1] if totals else 0
        return {
            "input_tokens": total - read - created,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }


def _running_sums(values: Any) -> Any:
    total = 0
    for value in values:
        total += value
        yield total


def _citation(ref: CitationRef, results: list[Json]) -> Json:
    index, start, end = (ref, 0, 1) if isinstance(ref, int) else ref
    if not 0 <= index < len(results):
        raise _invalid(
            f"fake anthropic: scripted citation of search_result {index}, but the request "
            f"holds {len(results)} search_result block(s)"
        )
    result = results[index]
    if not (result.get("citations") or {}).get("enabled"):
        raise _invalid(
            f"fake anthropic: scripted citation of search_result {index}, which does not set "
            'citations {"enabled": true}; the real API would not cite it'
        )
    content = result.get("content") or []
    if not 0 <= start < end <= len(content):
        raise _invalid(
            f"fake anthropic: citation block range [{start}, {end}) is outside "
            f"search_result {index}'s {len(content)} content block(s)"
        )
    return {
        "type": "search_result_location",
        "cited_text": "".join(b.get("text", "") for b in content[start:end]),
        "search_result_index": index,
        "source": result.get("source"),
        "title": result.get("title"),
        "start_block_index": start,
        "end_block_index": end,
    }


def _check_tool_use(spec: ToolUseSpec, body: Json) -> None:
    tools = _tools_by_name(body)
    if spec.name not in tools:
        raise _invalid(
            f"fake anthropic: scripted tool_use {spec.name!r} is not among the request's "
            f"tools {sorted(tools)}"
        )
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        raise _invalid('fake anthropic: scripted tool_use, but tool_choice is {"type": "none"}')
    schema = tools[spec.name].get("input_schema") or {}
    missing = [k for k in schema.get("required") or [] if k not in spec.input]
    if missing:
        raise _invalid(
            f"fake anthropic: scripted tool_use {spec.name!r} input misses required {missing}"
        )


def render_message(item: Reply, body: Json) -> Json:
    """The Message JSON for ``item`` answering ``body`` (raises ApiError on script mistakes)."""
    results = search_results(body)
    content: list[Json] = []
    out_chars = 0
    for spec in item.blocks:
        if isinstance(spec, TextSpec):
            block: Json = {"type": "text", "text": spec.text}
            if spec.citations:
                block["citations"] = [_citation(ref, results) for ref in spec.citations]
            out_chars += len(spec.text)
        else:
            _check_tool_use(spec, body)
            block = {"type": "tool_use", "id": spec.id, "name": spec.name, "input": spec.input}
            out_chars += len(json.dumps(spec.input))
        content.append(block)
    stop_reason = item.stop_reason or (
        "tool_use" if any(isinstance(b, ToolUseSpec) for b in item.blocks) else "end_turn"
    )
    usage: Json = {
        "input_tokens": estimate_input_tokens(body),
        "output_tokens": max(1, math.ceil(out_chars / 4)),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    usage.update(item.usage or {})
    return {
        "id": _rand("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _split(s: str, parts: int = 3) -> list[str]:
    """Split ``s`` into up to ``parts`` non-empty chunks at word boundaries."""
    words = re.findall(r"\s*\S+\s*|\s+", s)
    if len(words) <= 1:
        return [s] if s else []
    size = math.ceil(len(words) / parts)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _split_chars(s: str, parts: int = 3) -> list[str]:
    """Split ``s`` into up to ``parts`` chunks anywhere (partial JSON is cut mid-token)."""
    size = max(1, math.ceil(len(s) / parts))
    return [s[i : i + size] for i in range(0, len(s), size)]


def stream_events(message: Json) -> list[tuple[str, Json]]:
    """The SSE events (name, data) that stream ``message`` as the real API does."""
    start_msg = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start_msg["usage"] = dict(message["usage"], output_tokens=1)
    events: list[tuple[str, Json]] = [
        ("message_start", {"type": "message_start", "message": start_msg}),
        ("ping", {"type": "ping"}),
    ]

    def delta(index: int, d: Json) -> tuple[str, Json]:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})

    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            first: Json = {"type": "text", "text": ""}
            if "citations" in block:
                first["citations"] = []
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": first},
                )
            )
            for chunk in _split(block["text"]):
                events.append(delta(index, {"type": "text_delta", "text": chunk}))
            for citation in block.get("citations", []):
                events.append(delta(index, {"type": "citations_delta", "citation": citation}))
        else:
            first = dict(block, input={})
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": first},
                )
            )
            events.append(delta(index, {"type": "input_json_delta", "partial_json": ""}))
            for chunk in _split_chars(json.dumps(block["input"], ensure_ascii=False)):
                events.append(delta(index, {"type": "input_json_delta", "partial_json": chunk}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    usage = message["usage"]
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {
                    k: usage[k]
                    for k in (
                        "input_tokens",
                        "cache_creation_input_tokens",
                        "cache_read_input_tokens",
                        "output_tokens",
                    )
                    if k in usage
                },
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _error_body(type: str, message: str, request_id: str) -> Json:
    return {"type": "error", "error": {"type": type, "message": message}, "request_id": request_id}


# --------------------------------------------------------------------------- server


@dataclass
class _State:
    queue: deque[ScriptItem] = field(default_factory=deque)
    responder: Responder | None = None
    model_queues: dict[str, deque[ScriptItem]] = field(default_factory=dict)
    model_responders: dict[str, Responder] = field(default_factory=dict)


class FakeAnthropic:
    """A local aiohttp server speaking the Anthropic Messages API (see module docstring)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None
    ) -> None:
        """``api_key``: if set, only that key is accepted (else any non-empty key)."""
        self.host = host
        self.port = port
        self.api_key = api_key
        self.requests: list[Json] = []
        self.request_headers: list[dict[str, str]] = []
        self.request_times: list[float] = []  # time.monotonic() of each entry of `requests`
        self.count_tokens_requests: list[Json] = []
        self.prompt_cache = PromptCache()
        self.usages: list[Json] = []  # the usage of each answered message, in serving order
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()
        self._closing = asyncio.Event()

    # ---- lifecycle

    async def start(self) -> None:
        """Start serving; ``base_url`` is valid afterwards."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._closing.clear()
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving; pending delays end at once."""
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` for ``AsyncAnthropic(base_url=...)``."""
        if self._runner is None:
            raise RuntimeError("FakeAnthropic is not started")
        return f"http://{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An ``anthropic.AsyncAnthropic`` pointed at this fake (kwargs pass through)."""
        kwargs.setdefault("api_key", self.api_key or "test-key")
        return anthropic.AsyncAnthropic(base_url=self.base_url, **kwargs)

    # ---- scripting

    def script(self, *items: ScriptItem) -> None:
        """Queue answers, consumed one per valid request, in order."""
        self._state.queue.extend(items)

    def respond_with(self, fn: Responder | None) -> None:
        """Answer with ``fn(request_json)`` (sync or async) when the queue is empty."""
        self._state.responder = fn

    def script_model(self, model: str, *items: ScriptItem) -> None:
        """Queue answers for requests naming ``model`` only (e.g. a background job's calls,
        scripted apart from the turns'); once a model is scripted, its requests never take
        the general queue or responder."""
        self._state.model_queues.setdefault(model, deque()).extend(items)

    def respond_to_model(self, model: str, fn: Responder | None) -> None:
        """Answer requests naming ``model`` with ``fn`` when its queue is empty."""
        self._state.model_queues.setdefault(model, deque())
        if fn is None:
            self._state.model_responders.pop(model, None)
        else:
            self._state.model_responders[model] = fn

    def requests_for(self, model: str) -> list[Json]:
        """The recorded requests naming ``model``."""
        return [body for body in self.requests if body.get("model") == model]

    @property
    def pending(self) -> int:
        """Script items not yet consumed."""
        return len(self._state.queue)

    @property
    def last_request(self) -> Json:
        """The most recent request body."""
        if not self.requests:
            raise LookupError("no request received")
        return self.requests[-1]

    def reset(self) -> None:
        """Forget script, responder, recorded requests and the prompt cache."""
        self._state = _State()
        self.requests.clear()
        self.request_headers.clear()
        self.request_times.clear()
        self.count_tokens_requests.clear()
        self.prompt_cache.clear()
        self.usages.clear()

    async def wait_for_requests(self, n: int, timeout: float = 10) -> list[Json]:  # noqa: ASYNC109
        """Wait until at least ``n`` messages requests arrived; return them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.requests) < n:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"fake anthropic: {len(self.requests)} request(s) after {timeout}s, "
                    f"expected {n}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return list(self.requests)

    # ---- handlers

    def _json_error(self, status: int, type: str, message: str, **headers: str) -> web.Response:
        rid = _rand("req_011C", 20)
        return web.json_response(
            _error_body(type, message, rid), status=status, headers={"request-id": rid, **headers}
        )

    async def _read_json(self, request: web.Request) -> Json:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise ApiError(413, "request_too_large", "Request exceeds the maximum size") from exc
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _invalid(f"There was an issue with your request body: {exc}") from exc
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object")
        return body

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await self._read_json(request)
        except ApiError as exc:
            return self._json_error(exc.status, exc.type, exc.message)
        self.requests.append(body)
        self.request_headers.append(headers)
        self.request_times.append(time.monotonic())
        self._arrived.set()
        try:
            _check_auth(headers, self.api_key)
            validate_request(body)
        except ApiError as exc:
            return self._json_error(exc.status, exc.type, exc.message)
        item = await self._next_item(body)
        if item is None:
            return self._json_error(
                500,
                "api_error",
                "fake anthropic: no scripted reply (script() queue empty, no respond_with())",
                **{"x-should-retry": "false"},
            )
        return await self._serve(request, body, item)

    async def _next_item(self, body: Json) -> ScriptItem | None:
        model = body.get("model")
        if isinstance(model, str) and model in self._state.model_queues:
            queue = self._state.model_queues[model]
            if queue:
                return queue.popleft()
            responder = self._state.model_responders.get(model)
        elif self._state.queue:
            return self._state.queue.popleft()
        else:
            responder = self._state.responder
        if responder is None:
            return None
        result = responder(body)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _serve(
        self, request: web.Request, body: Json, item: ScriptItem
    ) -> web.StreamResponse:
        streaming = body.get("stream") is True
        while isinstance(item, Delay):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), item.seconds)
            if self._closing.is_set():
                return self._json_error(503, "api_error", "fake anthropic: shutting down")
            item = item.then
        if isinstance(item, ErrorReply):
            extra = {} if item.retry_after is None else {"retry-after": f"{item.retry_after:g}"}
            return self._json_error(item.status, item.type, item.message, **extra)
        if isinstance(item, StreamError) and not streaming:
            return self._json_error(ERROR_STATUS.get(item.type, 500), item.type, item.message)
        if isinstance(item, Disconnect) and (item.partial is None or not streaming):
            return await self._cut(request)
        partial = item.partial if isinstance(item, (StreamError, Disconnect)) else item
        try:
            message = render_message(partial, body) if partial is not None else None
        except ApiError as exc:
            return self._json_error(exc.status, exc.type, exc.message)
        if message is not None and partial is not None:
            message["usage"].update(self.prompt_cache.usage(body), **(partial.usage or {}))
            request[USAGE] = message["usage"]
            self.usages.append(message["usage"])
        rid = _rand("req_011C", 20)
        if not streaming:
            assert message is not None
            return web.json_response(message, headers={"request-id": rid})

        if message is not None:
            events = stream_events(message)
            delay_s = partial.chunk_delay if partial is not None else 0.0
        else:
            events, delay_s = [], 0.0
        if isinstance(item, Disconnect):  # up to the last content_block_stop, then cut
            events = [e for e in events if e[0] not in ("message_delta", "message_stop")]
        if isinstance(item, StreamError):
            # Up to the last content_block_stop, then the error in place of message_delta.
            if message is None:
                start: Json = {
                    "id": _rand("msg_01", 22),
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": estimate_input_tokens(body), "output_tokens": 1},
                }
                events = [
                    ("message_start", {"type": "message_start", "message": start}),
                    ("ping", {"type": "ping"}),
                ]
            else:
                events = [e for e in events if e[0] not in ("message_delta", "message_stop")]
            events.append(("error", _error_body(item.type, item.message, rid)))
        resp = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": rid,
            },
        )
        await resp.prepare(request)
        try:
            for name, data in events:
                payload = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                await resp.write(payload.encode())
                if delay_s:
                    await asyncio.sleep(delay_s)
            if isinstance(item, Disconnect):
                return await self._cut(request)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away mid-stream
        return resp

    @staticmethod
    async def _cut(request: web.Request) -> web.StreamResponse:
        """Drop the connection under the request (the client sees it closed mid-answer)."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client

    async def _handle_count_tokens(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await self._read_json(request)
            self.count_tokens_requests.append(body)
            _check_auth(headers, self.api_key)
            for name in ("model", "messages"):
                if name not in body:
                    raise _invalid(f"{name}: Field required")
            validate_request({"max_tokens": 1, **body})
        except ApiError as exc:
            return self._json_error(exc.status, exc.type, exc.message)
        return web.json_response(
            {"input_tokens": estimate_input_tokens(body)},
            headers={"request-id": _rand("req_011C", 20)},
        )

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        return self._json_error(
            404, "not_found_error", f"Not found: {request.method} {request.path}"
        )
