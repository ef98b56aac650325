"""De-duplication: drop Slack's retries and the app_mention + message double delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from app.services import Services

NEW_MESSAGE_SUBTYPES = {None, "thread_broadcast", "file_share"}


def dedupe_keys(body: dict[str, Any]) -> list[str]:
    """Keys that identify one delivery: the event id, and for new messages team+channel+ts."""
    if body.get("type") != "event_callback":
        return []
    keys = [f"event:{body.get('team_id')}:{body.get('event_id')}"]
    event = body.get("event") or {}
    is_message = event.get("type") in ("message", "app_mention")
    if is_message and event.get("subtype") in NEW_MESSAGE_SUBTYPES and event.get("ts"):
        keys.append(f"message:{body.get('team_id')}:{event.get('channel')}:{event['ts']}")
    return keys


def register(app: AsyncApp, services: Services) -> None:
    @app.middleware
    async def drop_duplicates(
        body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        for key in dedupe_keys(body):
            if not await services.once.claim(key):
                return BoltResponse(status=200, body="")
        await next()
        return None
