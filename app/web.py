"""Lore's HTTP surface: `/slack/events` into Bolt, `/healthz` / `/readyz` / `/metrics` for
operators, and the JSON API over the agent (`/api/...`, see `app.api`; `/` leads to the
playground in local mode)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from app.api import add_api_routes

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]


class EarlyAcks(Protocol):
    async def take(self, body: str, headers: Mapping[str, str]) -> bool:
        """Whether the delivery is written down and may be answered 200 before Bolt sees it."""
        ...  # pragma: no cover - protocol


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 2 * 1024 * 1024


def make_web_app(
    bolt: Callable[[], AsyncApp | None],
    readiness: ReadinessCheck,
    metrics: Handler,
    *,
    events: bool = True,
    early: Callable[[], EarlyAcks | None] = lambda: None,
) -> web.Application:
    """The aiohttp application; `bolt` returns the Bolt app once it exists, `metrics` serves
    `/metrics` (see `app.metrics_endpoint`). Without `events` (Socket Mode, where requests carry
    no signature Lore could check) `/slack/events` is not served at all. A delivery `early`
    takes is answered 200 before Bolt sees it (`handlers.early_ack`)."""

    async def slack_events(request: web.Request) -> web.StreamResponse:
        app = bolt()
        if app is None:
            return web.json_response({"error": "starting"}, status=503)
        try:
            body = await request.text()
            acks = early()
            if acks is not None and await acks.take(body, request.headers):
                return web.Response(status=200)
            bolt_request = AsyncBoltRequest(
                body=body,
                query=request.query_string,
                headers=request.headers,  # type: ignore[arg-type]
            )
        except ValueError:
            return web.json_response({"error": "malformed request body"}, status=400)
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    async def slack_oauth(request: web.Request) -> web.StreamResponse:
        """`/slack/install` and `/slack/oauth_redirect`: Bolt's OAuth flow (OAuth mode only)."""
        app = bolt()
        flow = app.oauth_flow if app is not None else None
        if flow is None:
            raise web.HTTPNotFound()
        bolt_request = await to_bolt_request(request)
        if request.path == flow.install_path:
            return await to_aiohttp_response(await flow.handle_installation(bolt_request))
        return await to_aiohttp_response(await flow.handle_callback(bolt_request))

    async def healthz(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.StreamResponse:
        checks = await readiness()
        ready = bolt() is not None and all(value == "ok" for value in checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    application = web.Application(client_max_size=MAX_BODY_BYTES)
    if events:
        application.router.add_post("/slack/events", slack_events)
    application.router.add_get("/slack/install", slack_oauth)
    application.router.add_get("/slack/oauth_redirect", slack_oauth)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/metrics", metrics)
    add_api_routes(application)
    return application
