"""The intake at the Slack edge: message events Lore archives are written down before the ack.

Where Bolt acks (slack_bolt 1.x): Lore's `/slack/events` handler (`app/web.py`) writes the HTTP
response from the value `AsyncApp.async_dispatch` returns, and Socket Mode sends its ack after
`run_async_bolt_app` awaits the same method (`adapter/socket_mode/async_internals.py`).
`async_dispatch` (`app/async_app.py`) awaits every global middleware in turn, then hands a
matching listener to `AsyncioListenerRunner.run` (`listener/asyncio_runner.py`), which, with
process_before_response=False, calls `ack()`, starts the listener with `asyncio.ensure_future`
and returns the ack. So a global middleware that awaits the intake's write finishes it before
the 200 goes out; if the write fails, Bolt answers 500 and Slack delivers the event again.
Deliveries `handlers.early_ack` answered before Bolt saw them arrive here written down already.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from app.intake import Kept
from app.services import Services

KEPT = "lore_intake_kept"
EARLY = "lore_intake_acked_early"
NEW_MESSAGE_SUBTYPES = {None, "thread_broadcast", "file_share"}
CHANGE_SUBTYPES = ("message_changed", "message_deleted")
MESSAGE_EVENTS = ("message", "app_mention")
"""The message events Lore archives: new messages, and changes to them (`handlers.messages`
and the de-duplication middleware read these)."""


def archived_message(event: dict[str, Any]) -> str | None:
    """`channel:ts` of the message a message event stores, edits or deletes; None for events
    that archive nothing."""
    if event.get("type") not in MESSAGE_EVENTS or "channel" not in event:
        return None
    subtype = event.get("subtype")
    if subtype == "message_deleted":
        ts = event.get("deleted_ts")
    elif subtype == "message_changed":
        ts = (event.get("message") or {}).get("ts")
    elif subtype in NEW_MESSAGE_SUBTYPES:
        ts = event.get("ts")
    else:
        return None
    return f"{event['channel']}:{ts}" if isinstance(ts, str) else None


def kept(context: AsyncBoltContext) -> Kept | None:
    """The intake entry of this delivery, if it has one."""
    entry = context.get(KEPT)
    return entry if isinstance(entry, Kept) else None


def acked_early(context: AsyncBoltContext) -> bool:
    """Whether Slack was answered before Bolt saw this delivery (`handlers.early_ack`): no
    retry of Slack's will come if handling it fails."""
    return isinstance(context.get(EARLY), Kept)


class Authorised(Protocol):
    def authorised(self, team_id: str, bot_user_id: str | None) -> None:
        """Bolt authorised a delivery of `team_id` (its bot user is `bot_user_id`)."""
        ...  # pragma: no cover - protocol


class KeepBeforeAck(AsyncMiddleware):
    """Keeps every archived message event before Bolt acks it.

    A middleware class, not a function: Bolt builds no keyword arguments to call it (that
    costs a function middleware tens of microseconds on every delivery).
    """

    def __init__(self, services: Services, authorised: Authorised | None) -> None:
        self._services = services
        self._authorised = authorised

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        body, context = req.body, req.context
        if (early := context.get(EARLY)) is not None:
            context[KEPT] = early  # written down before the ack already
        elif body.get("type") == "event_callback":
            event = body.get("event") or {}
            key = archived_message(event)
            if key is not None:
                team_id = context.team_id or event.get("team") or ""
                payload = {"event": event, "bot_user_id": context.bot_user_id}
                context[KEPT] = await self._services.intake.keep(team_id, key, payload)
            if self._authorised is not None and context.team_id is not None:
                self._authorised.authorised(context.team_id, context.bot_user_id)
        await next()
        return resp


def register(app: AsyncApp, services: Services, authorised: Authorised | None = None) -> None:
    """Register before the other middleware, so a duplicate is dropped only once it is
    written down (and then let go); `authorised` hears of each workspace Bolt authorised."""
    app.middleware(KeepBeforeAck(services, authorised))
