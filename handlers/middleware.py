"""De-duplication: drop Slack's retries and the app_mention + message double delivery.

The middleware also counts every delivery (and every duplicate) in the metrics, and binds the
delivery's team, event id and conversation to the log context for everything it leads to.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from app import log_context
from app.services import Services
from handlers import intake

log = logging.getLogger("lore.events")


def dedupe_keys(body: dict[str, Any]) -> list[str]:
    """Keys that identify one delivery: the event id, and for new messages team+channel+ts."""
    if body.get("type") != "event_callback":
        return []
    keys = [f"event:{body.get('team_id')}:{body.get('event_id')}"]
    event = body.get("event") or {}
    is_message = event.get("type") in intake.MESSAGE_EVENTS
    if is_message and event.get("subtype") in intake.NEW_MESSAGE_SUBTYPES and event.get("ts"):
        keys.append(f"message:{body.get('team_id')}:{event.get('channel')}:{event['ts']}")
    return keys


def delivery_type(body: dict[str, Any]) -> str:
    """What a delivery is, for the metrics: its event type, `slash_command`, or payload type."""
    if body.get("type") == "event_callback":
        return str((body.get("event") or {}).get("type") or "unknown")
    if "command" in body:
        return "slash_command"
    return str(body.get("type") or "unknown")


def log_fields(body: dict[str, Any], context: AsyncBoltContext) -> dict[str, str | None]:
    """The ids a delivery's log lines carry: team, event id, and channel + thread for messages."""
    event = body.get("event") or {}
    thread_ts = None
    if event.get("type") in intake.MESSAGE_EVENTS:
        thread_ts = event.get("thread_ts") or event.get("ts")
    return {
        "team": context.team_id,
        "event_id": body.get("event_id"),
        "channel": context.channel_id,
        "thread_ts": thread_ts,
    }


def failed_before(req: AsyncBoltRequest) -> bool:
    """Whether this is Slack's retry after an attempt that failed (not one that timed out,
    which may still be under way)."""
    number = (req.headers.get("x-slack-retry-num") or ["0"])[0]
    reason = (req.headers.get("x-slack-retry-reason") or [""])[0]
    return number not in ("", "0") and reason not in ("http_timeout", "timeout")


class DropDuplicates(AsyncMiddleware):
    """Counts each delivery, binds its log context and drops one already claimed.

    A middleware class, not a function: Bolt builds no keyword arguments to call it.
    """

    def __init__(self, services: Services) -> None:
        self._services = services

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        services, body, context = self._services, req.body, req.context
        kind = delivery_type(body)
        services.metrics.event_received(kind, context.team_id)
        log_context.bind_delivery(**log_fields(body, context))
        retry = failed_before(req)
        delivery = str(body.get("event_id") or "")
        claimed: list[str] = []
        for key in dedupe_keys(body):
            try:
                won = await services.once.claim(key, delivery, retry)
            except Exception:
                # answered 500: Slack (or `handlers.early_ack`, for a delivery it acked) sends the
                # delivery again, and that retry takes the claim over even if this one was
                # stored; a retry of Slack's is written down again, so this entry may go
                kept = intake.kept(context)
                if kept is not None and not intake.acked_early(context):
                    await services.intake.done(kept)
                raise
            if not won:
                services.metrics.event_duplicate(kind)
                if (kept := intake.kept(context)) is not None:
                    await services.intake.done(kept)  # written down before this check
                log.debug("dropped a duplicate %s delivery (%s)", kind, key.split(":")[0])
                return BoltResponse(status=200, body="")
            claimed.append(key)
        await next()
        await self._settle(claimed)
        return resp

    async def _settle(self, keys: list[str]) -> None:
        """The delivery was handed on: its claims stop being taken over by retries (a claim
        left pending is harmless: Slack retries only deliveries not acknowledged)."""
        for key in keys:
            try:
                await self._services.once.settle(key)
            except Exception as error:
                log.warning("could not settle a delivery's claim: %s", error)
                return


def register(app: AsyncApp, services: Services) -> None:
    app.middleware(DropDuplicates(services))
