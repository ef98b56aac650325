"""One Events API URL in front of several Lore processes, for the scale-out benchmarks.

Each request goes on unchanged (its Slack signature still holds) to one process, in turn or at
random, and to the next when that one does not answer (it is restarting).
"""

from __future__ import annotations

import random

import aiohttp
from aiohttp import web

from tests.event_splitter import FORWARDED

PASSED_BACK = ("content-type", "x-slack-no-retry")


class Balancer:
    """Forwards `/slack/events` to the processes at `targets` (base URLs): round robin, or in
    the random order `chooser` draws; `failovers` counts requests the first choice missed."""

    def __init__(self, targets: list[str], chooser: random.Random | None = None) -> None:
        self._targets = targets
        self._chooser = chooser
        self._next = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.failovers = 0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        application = web.Application()
        application.router.add_post("/slack/events", self._forward)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/slack/events"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _order(self) -> list[str]:
        if self._chooser is not None:
            return self._chooser.sample(self._targets, len(self._targets))
        first = self._next % len(self._targets)
        self._next += 1
        return self._targets[first:] + self._targets[:first]

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        for n, target in enumerate(self._order()):
            try:
                async with self._session.post(
                    f"{target}/slack/events", data=body, headers=headers
                ) as response:
                    answer = await response.read()
                    passed = {k: v for k, v in response.headers.items() if k.lower() in PASSED_BACK}
                    return web.Response(status=response.status, body=answer, headers=passed)
            except aiohttp.ClientConnectionError:
                self.failovers += n == 0
        return web.Response(status=502)
