"""The model for bench/turn_overhead.py, bench/open_load.py and bench/soak.py:
tests/fake_anthropic.py's server in its own process.

It answers every request at once (or, with `--stream-seconds S`, spreads each streamed answer's
SSE events evenly over S seconds, as a model generating it would) and times each one at the
server, from the request's arrival to the end of its response (the whole SSE stream), so the
benchmark can subtract model time from a turn. With `--steps 2` a turn's first request is
answered with a `search_conversations` tool_use and its second with text; with `--steps 1` the
text comes at once. The text is "Answer to TAG.", TAG being the tag word of the question (what
follows the prompt's last "... asks you]" header; the thread's earlier messages come before
it), so each reply can be checked; a request without tools (/recall's summary) gets that text
at once. A question that asks to "remember" (bench/soak.py's teaching, tag `t-R-N`) is answered
first with a `memory_insert` of the line "fact TAG" into the `org` block, then with "Answer to
TAG." once the edit's tool result came back, or "Not saved TAG." when that result is an error.

GET /_bench/timings answers [{"tag": TAG or null, "ms": server time, "step": 0 for a turn's
first request and one more per tool round, "usage": the usage it reported (input, output,
cache-read and cache-creation tokens; see tests/fake_anthropic.py `PromptCache`)}, ...] for
every answered request so far, with "tool" (the tool_use it answered with, or null) and
"status" (200, or the error status it answered). TAG is `q-R-N` (a thread's first question),
`f-R-N` (a follow-up) or `t-R-N` (teaching).
POST /_bench/overload {"seconds": S} answers every request of the next S seconds with HTTP 529
`overloaded_error`, as the real API does when it is overloaded. Prints "ready PORT" once it
listens.

    .venv/bin/python bench/fake_model.py [--port 0] [--steps 2] [--stream-seconds 0]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_anthropic import (
    USAGE,
    ApiError,
    ErrorReply,
    FakeAnthropic,
    Reply,
    ScriptItem,
    ToolUseSpec,
    error,
    render_message,
    reply,
    stream_events,
    text,
    tool_use,
)

TAG = re.compile(r"\b[qft]-\d+-\d+\b")
TEACHING = "remember"
ASKS = "asks you]"
STARTED = web.RequestKey("bench_started", float)


def question_of(body: dict[str, Any]) -> str:
    """The text of the turn's last plain user message (not tool results): the question asked."""
    for message in reversed(body.get("messages") or []):
        content = message.get("content")
        if message.get("role") != "user":
            continue
        if isinstance(content, str):
            return content
        if isinstance(content, list) and all(b.get("type") == "text" for b in content):
            return "\n".join(str(b.get("text", "")) for b in content)
    return ""


def asked(body: dict[str, Any]) -> str:
    """The question itself: what follows the last "... asks you]" header (the thread's earlier
    messages come before it)."""
    return question_of(body).rsplit(ASKS, 1)[-1]


def tag_of(body: dict[str, Any]) -> str | None:
    found = TAG.findall(asked(body))
    return found[-1] if found else None


def step_of(body: dict[str, Any]) -> int:
    """The request's step within its turn: 0 first, then one more per tool round."""
    return sum(
        1
        for message in body.get("messages") or []
        if isinstance(message.get("content"), list)
        and any(b.get("type") == "tool_result" for b in message["content"])
    )


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of the request's last message ([] if it holds none)."""
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if b.get("type") == "tool_result"]


def has_tool_result(body: dict[str, Any]) -> bool:
    return bool(tool_results(body))


class TimedFake(FakeAnthropic):
    """The fake Messages API, noting each answered request's tag and server time."""

    def __init__(self, port: int, steps: int, stream_seconds: float = 0.0) -> None:
        super().__init__(port=port)
        self.timings: list[dict[str, Any]] = []
        self._steps = steps
        self._overloaded_until = 0.0
        self._stream_seconds = stream_seconds
        self.respond_with(self._answer)

    def _answer(self, body: dict[str, Any]) -> ScriptItem:
        tag = tag_of(body)
        results = tool_results(body)
        if not body.get("tools"):  # /recall's summary: text only
            return reply(text(f"Answer to {tag}."))
        if not results and TEACHING in asked(body):
            return reply(tool_use("memory_insert", {"label": "org", "text": f"fact {tag}"}))
        if self._steps > 1 and not results:
            question = TAG.sub("", question_of(body).split("\n")[-1]).replace("<@U0LORE>", "")
            item = reply(tool_use("search_conversations", {"query": question.strip() or "news"}))
        elif any(r.get("is_error") for r in results):
            item = reply(text(f"Not saved {tag}."))
        else:
            item = reply(text(f"Answer to {tag}."))
        return self._paced(item, body) if body.get("stream") is True else item

    def _paced(self, item: Reply, body: dict[str, Any]) -> Reply:
        """`item` with a pause after each of its SSE events, `--stream-seconds` in all."""
        if not self._stream_seconds:
            return item
        try:
            events = len(stream_events(render_message(item, body)))
        except ApiError:
            return item  # answered as the error it is
        return dataclasses.replace(item, chunk_delay=self._stream_seconds / events)

    async def _next_item(self, body: dict[str, Any]) -> ScriptItem | None:
        if time.monotonic() < self._overloaded_until:
            return error(529, "overloaded_error", "Overloaded")
        return await super()._next_item(body)

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        request[STARTED] = time.perf_counter()
        return await super()._handle_messages(request)

    async def _serve(
        self, request: web.Request, body: dict[str, Any], item: ScriptItem
    ) -> web.StreamResponse:
        response = await super()._serve(request, body, item)
        elapsed = (time.perf_counter() - request[STARTED]) * 1000
        usage = request.get(USAGE)
        self.timings.append(
            {
                "tag": tag_of(body),
                "ms": elapsed,
                "step": step_of(body),
                "usage": usage,
                "tool": _tool_of(item),
                "status": item.status if isinstance(item, ErrorReply) else response.status,
            }
        )
        return response

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/_bench/timings":
            return web.json_response(self.timings)
        if request.method == "POST" and request.path == "/_bench/overload":
            seconds = float((await request.json())["seconds"])
            self._overloaded_until = time.monotonic() + seconds
            return web.json_response({"ok": True})
        return await super()._handle_unknown(request)


def _tool_of(item: ScriptItem) -> str | None:
    """The name of the tool_use a script item answers with, if any."""
    blocks = item.blocks if isinstance(item, Reply) else ()
    uses = [block.name for block in blocks if isinstance(block, ToolUseSpec)]
    return uses[0] if uses else None


async def serve(port: int, steps: int, stream_seconds: float) -> None:
    fake = TimedFake(port, steps, stream_seconds)
    await fake.start()
    print(f"ready {fake.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--steps", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--stream-seconds", type=float, default=0.0, help="seconds each streamed answer takes"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.steps, args.stream_seconds))


if __name__ == "__main__":
    main()
