"""Server-sent events of workspace changes, for the playground page."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import web

QUEUE_SIZE = 2000
PING_SECONDS = 15.0

Event = tuple[str, str] | None  # (event name, JSON data); None ends the stream


class ChangeHub:
    """Fans each published change out to every open event stream.

    A page that falls QUEUE_SIZE events behind is disconnected; its EventSource reconnects and
    the page reloads what it shows.
    """

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()
        self._closed = False

    @property
    def listening(self) -> bool:
        """Whether any page is connected (publishing is free otherwise)."""
        return bool(self._queues)

    def publish(self, event: str, data: object) -> None:
        if not self._queues:
            return
        encoded = json.dumps(data, separators=(",", ":"))
        for queue in list(self._queues):
            try:
                queue.put_nowait((event, encoded))
            except asyncio.QueueFull:
                self._queues.discard(queue)
                _end(queue)

    def close(self) -> None:
        """End every stream (the emulator is stopping)."""
        self._closed = True
        for queue in list(self._queues):
            _end(queue)
        self._queues.clear()

    @contextlib.asynccontextmanager
    async def _subscription(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler: `text/event-stream` of every change until the page goes away."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        if self._closed:
            return response
        async with self._subscription() as queue:
            try:
                await response.write(b"retry: 1000\nevent: hello\ndata: {}\n\n")
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), PING_SECONDS)
                    except TimeoutError:
                        await response.write(b": ping\n\n")
                        continue
                    if item is None:
                        break
                    event, data = item
                    await response.write(f"event: {event}\ndata: {data}\n\n".encode())
            except ConnectionError:
                pass  # the page went away
        return response


def _end(queue: asyncio.Queue[Event]) -> None:
    """Make the stream of `queue` end as soon as it reads (dropping what it had not sent)."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)
