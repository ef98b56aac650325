"""The Web API over HTTP: argument parsing, tokens, faults and dispatch to method handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web

from emulator.api import METHODS, ApiContext, ApiError, Handler
from emulator.api.limits import LimitError
from emulator.faults import FaultInjector
from emulator.oauth import OAuthServer

log = logging.getLogger(__name__)

APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


async def parse_args(request: web.Request) -> dict[str, Any]:
    """Query parameters merged with a JSON, urlencoded or multipart body."""
    args: dict[str, Any] = dict(request.query)
    if not request.body_exists:
        return args
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        args.update(body)
        return args
    form = await request.post()
    for key, value in form.items():
        args[key] = value if isinstance(value, str) else getattr(value, "filename", "")
    return args


def _token(request: web.Request, args: dict[str, Any]) -> str | None:
    token = args.pop("token", None)
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip() or token
    return str(token) if token else None


class WebApi:
    """Answers `/api/{method}` like slack.com: always JSON, HTTP 200 unless rate limited."""

    def __init__(
        self,
        context: ApiContext,
        faults: FaultInjector,
        calls: list[tuple[str, dict[str, Any]]],
        call_times: list[float] | None = None,
    ) -> None:
        self.context = context
        self.faults = faults
        self.calls = calls
        self.call_times = call_times if call_times is not None else []
        self.handlers: dict[str, Handler] = dict(METHODS)
        self.oauth: OAuthServer | None = None
        self.limit_refusals: list[dict[str, Any]] = []
        """Every call refused for breaking one of Slack's size limits (see `api.limits`)."""

    def _check_token(self, method: str, token: str | None) -> None:
        config = self.context.config
        if token is None:
            raise ApiError("not_authed")
        if self.oauth is not None and self.oauth.is_issued(token):
            if method in APP_TOKEN_METHODS:
                raise ApiError("not_allowed_token_type")
            self.oauth.use(method, token)
            return
        if token not in (config.bot_token, config.app_token):
            raise ApiError("invalid_auth")
        wants_app_token = method in APP_TOKEN_METHODS
        if (token == config.app_token) != wants_app_token:
            raise ApiError("not_allowed_token_type")

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp handler of `/api/{method}`."""
        method = request.match_info["method"]
        try:
            args = await parse_args(request)
        except ApiError as error:
            return web.json_response({"ok": False, "error": error.error})
        token = _token(request, args)
        self.calls.append((method, args))
        self.call_times.append(time.monotonic())
        handler = self.handlers.get(method)
        delay = self.faults.delay(method)
        if delay:
            await asyncio.sleep(delay)
        try:
            if method == "oauth.v2.access" and self.oauth is not None:
                result = await self.oauth.access(request, args)
                return web.json_response(result)
            if handler is None:
                raise ApiError("unknown_method")
            self._check_token(method, token)
            fault = self.faults.take(method)
            if fault is not None:
                limited = fault.retry_after is not None
                headers = {"Retry-After": str(fault.retry_after)} if limited else {}
                body = {"ok": False, "error": fault.error}
                return web.json_response(body, status=fault.status, headers=headers)
            result = handler(self.context, args)
        except ApiError as error:
            log.debug("web api %s -> %s", method, error.error)
            if isinstance(error, LimitError):
                refusal = {"method": method, "error": error.error, "messages": error.messages}
                self.limit_refusals.append(refusal)
            result = {"ok": False, "error": error.error, **error.extra}
        return web.Response(
            text=json.dumps(result), content_type="application/json", charset="utf-8"
        )
