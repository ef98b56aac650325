"""The model for bench/turn_overhead.py and bench/open_load.py: tests/fake_anthropic.py's
server in its own process.

It answers every request at once (or, with `--stream-seconds S`, spreads each streamed answer's
SSE events evenly over S seconds, as a model generating it would) and times each one at the
server, from the request's arrival to the end of its response (the whole SSE stream), so the
benchmark can subtract model time from a turn. With `--steps 2` a turn's first request is
answered with a `search_conversations` tool_use and its second with text; with `--steps 1` the
text comes at once. The text is "Answer to TAG.", TAG being the tag word of the question, so
each reply can be checked.

GET /_bench/timings answers [{"tag": TAG or null, "ms": server time, "step": 0 for a turn's
first request and one more per tool round, "usage": the usage it reported (input, output,
cache-read and cache-creation tokens; see tests/fake_anthropic.py `PromptCache`)}, ...] for
every answered request so far. TAG is `q-R-N` (a thread's first question) or `f-R-N` (a
follow-up). Prints "ready PORT" once it listens.

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
    FakeAnthropic,
    Reply,
    ScriptItem,
    render_message,
    reply,
    stream_events,
    text,
    tool_use,
)

TAG = re.compile(r"\b[qf]-\d+-\d+\b")
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


def tag_of(body: dict[str, Any]) -> str | None:
    found = TAG.findall(question_of(body))
    return found[-1] if found else None


def step_of(body: dict[str, Any]) -> int:
    """The request's step within its turn: 0 first, then one more per tool round."""
    return sum(
        1
        for message in body.get("messages") or []
        if isinstance(message.get("content"), list)
        and any(b.get("type") == "tool_result" for b in message["content"])
    )


def has_tool_result(body: dict[str, Any]) -> bool:
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


class TimedFake(FakeAnthropic):
    """The fake Messages API, noting each answered request's tag and server time."""

    def __init__(self, port: int, steps: int, stream_seconds: float = 0.0) -> None:
        super().__init__(port=port)
        self.timings: list[dict[str, Any]] = []
        self._steps = steps
        self._stream_seconds = stream_seconds
        self.respond_with(self._answer)

    def _answer(self, body: dict[str, Any]) -> ScriptItem:
        if self._steps > 1 and not has_tool_result(body):
            question = TAG.sub("", question_of(body).split("\n")[-1]).replace("<@U0LORE>", "")
            item = reply(tool_use("search_conversations", {"query": question.strip() or "news"}))
        else:
            item = reply(text(f"Answer to {tag_of(body)}."))
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
            {"tag": tag_of(body), "ms": elapsed, "step": step_of(body), "usage": usage}
        )
        return response

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/_bench/timings":
            return web.json_response(self.timings)
        return await super()._handle_unknown(request)


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
