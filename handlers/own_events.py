"""Lore's own events: ignored as Bolt ignores them, except the deletion of one of its messages.

Bolt drops every event whose user is the bot (its built-in `IgnoringSelfEvents`), the deletion
of a Lore reply included; yet a reply deleted in Slack (an admin may delete any message) must
leave the archive like any other deleted message: Lore shows nobody what Slack no longer shows.
The app turns Bolt's built-in off and registers this rule first in its place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.middleware.ignoring_self_events import IgnoringSelfEvents
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import extract_user_id
from slack_bolt.response import BoltResponse


def ignored(body: dict[str, Any], bot_user_id: str | None, bot_id: str | None) -> bool:
    """Whether a delivery is an event of Lore itself that no listener should see: Bolt's rule
    (the event's user is the bot user, or its `bot_id` the bot's), but for deletions."""
    event = body.get("event")
    kept = IgnoringSelfEvents.events_that_should_be_kept  # the bot's events Bolt passes on
    if not isinstance(event, dict) or event.get("type") in kept:
        return False
    if event.get("subtype") == "message_deleted":
        return False
    user = extract_user_id(body)
    by_user = user is not None and user == bot_user_id
    by_bot = event.get("bot_id") is not None and event.get("bot_id") == bot_id
    return by_user or by_bot


class IgnoreOwnEvents(AsyncMiddleware):
    """Acknowledges Lore's own events without handling them (see `ignored`)."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        auth = req.context.authorize_result
        if auth is not None and ignored(req.body, auth.bot_user_id, auth.bot_id):
            return await req.context.ack()
        return await next()


def register(app: AsyncApp) -> None:
    """Register first, before any other middleware (the app has Bolt's built-in turned off)."""
    app.middleware(IgnoreOwnEvents())
