"""One Events API stream in front of several Lore processes, as a load balancer that sometimes
delivers twice: each event goes, unchanged (so its Slack signature still holds), to one target
or to all of them at once, chosen at random."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import aiohttp
from aiohttp import web

FORWARDED = (
    "Content-Type",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "X-Slack-Retry-Num",
    "X-Slack-Retry-Reason",
)


class EventSplitter:
    """POST /slack/events here; `sent` counts deliveries by the tuple of targets chosen."""

    def __init__(self, targets: list[str], chooser: random.Random) -> None:
        self._targets = targets
        self._chooser = chooser
        self._choices = [(i,) for i in range(len(targets))] + [tuple(range(len(targets)))]
        self.sent: Counter[tuple[int, ...]] = Counter()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        application = web.Application()
        application.router.add_post("/slack/events", self._split)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/slack/events"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _split(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        chosen = self._chooser.choice(self._choices)
        self.sent[chosen] += 1
        statuses = await asyncio.gather(*(self._post(i, body, headers) for i in chosen))
        ok = [status for status in statuses if 200 <= status < 300]
        return web.Response(status=ok[0] if ok else statuses[0])

    async def _post(self, target: int, body: bytes, headers: dict[str, str]) -> int:
        assert self._session is not None
        try:
            async with self._session.post(
                f"{self._targets[target]}/slack/events", data=body, headers=headers
            ) as response:
                await response.read()
                return response.status
        except aiohttp.ClientError:
            return 502
