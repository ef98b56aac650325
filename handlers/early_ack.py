"""Acknowledging a message event as soon as it is written down; Bolt handles it right after.

Bolt answers a delivery once its global middleware has run (`handlers.intake`). For the message
events Lore keeps, the 200 need not wait for that: once the signature holds (slack-sdk's
`SignatureVerifier`, the one Bolt uses) and the event is in the intake log, nothing
acknowledged can be lost. So Lore answers at once and puts the delivery through Bolt from the
`QuietQueue`, when the edge is quiet. Everything else goes through Bolt before its ack, as
Slack sent it: other events, commands, interactions, deliveries of a workspace Bolt has not
authorised in this process lately, and every delivery while the queue is full.

Lore's own messages (its streamed replies and their edits) are answered here and go no further
(`handlers.own_events`: no listener would see them; their deletions go through).
A deferred dispatch that fails (a store away: Bolt answered 500) is tried again as Slack would
retry it, then, if the store stays away, handled from the intake log (`Intake.strand`: archived
and answered as a dead process's entries are); a delivery no listener took (Bolt refused it: an
uninstalled workspace) has its entry finished. A workspace being forgotten has the deliveries
waiting here let go unhandled, so nothing it said before the forgetting is archived after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import extract_is_enterprise_install, extract_team_id
from slack_sdk.signature import SignatureVerifier

from app.intake import Intake, Kept
from app.quiet_queue import QuietQueue
from app.retry import Backoff, CountsRetries, retrying
from app.team_halts import TeamHalts
from handlers import intake, own_events

log = logging.getLogger("lore.edge")

AUTHORISED_FOR = 300.0
"""Seconds a workspace Bolt authorised stays eligible without Bolt authorising it again."""


class CountsEarlyAcks(CountsRetries, Protocol):
    def event_acked_early(self) -> None:
        """A delivery was answered as soon as it was written down."""
        ...  # pragma: no cover - protocol


class DispatchFailed(Exception):
    """Bolt answered a deferred delivery with a server error."""


@dataclass(frozen=True)
class Delivery:
    """A delivery answered early: its workspace, its `TeamHalts` stamp
    when it was taken, and the request as Slack sent it."""

    team_id: str
    stamp: int
    body: str
    headers: dict[str, str]


class EarlyAck:
    """The early path of `/slack/events`: `take` keeps and queues a delivery, or declines it."""

    def __init__(
        self,
        bolt: AsyncApp,
        intake_: Intake,
        queue: QuietQueue,
        signing_secret: str,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        counts: CountsEarlyAcks,
        backoff: Backoff | None = None,
    ) -> None:
        self._bolt = bolt
        self._intake = intake_
        self._queue = queue
        self._verifier = SignatureVerifier(signing_secret)
        self._spawn = spawn
        self._counts = counts
        self._backoff = backoff or Backoff(attempts=8)
        self._authorised: dict[str, tuple[str | None, float]] = {}
        self._halts = TeamHalts()

    async def halt_team(self, team_id: str) -> None:
        """The workspace is being forgotten: its deliveries taken so far are let go unhandled
        (their entries finished), and until `resume_team` its deliveries go through Bolt before
        their ack; returns once its deliveries in Bolt now have been handled."""
        self._authorised.pop(team_id, None)
        await self._halts.halt(team_id)

    def resume_team(self, team_id: str) -> None:
        self._halts.resume(team_id)

    def authorised(self, team_id: str, bot_user_id: str | None) -> None:
        """Bolt authorised a delivery of `team_id`: its next ones may be acked early."""
        self._authorised[team_id] = (bot_user_id, time.monotonic() + AUTHORISED_FOR)

    async def take(self, body: str, headers: Mapping[str, str]) -> bool:
        """Keep the delivery and queue it for Bolt (answer 200 now), or leave it to Bolt (False)."""
        self._queue.arrived()
        payload = self._verified(body, headers)
        if payload is None or payload.get("type") != "event_callback":
            return False
        event = payload.get("event")
        key = intake.archived_message(event) if isinstance(event, dict) else None
        team_id = extract_team_id(payload)
        if key is None or team_id is None or extract_is_enterprise_install(payload):
            return False
        if self._halts.halted(team_id):
            return False
        bot_user_id, until = self._authorised.get(team_id, (None, 0.0))
        if until < time.monotonic():
            return False
        if own_events.ignored(payload, bot_user_id, None):
            self._counts.event_acked_early()  # Lore's own message: no listener would see it
            return True
        try:
            kept = await self._intake.keep(
                team_id, key, {"event": event, "bot_user_id": bot_user_id}
            )
        except Exception as error:
            log.warning("could not keep a delivery before its ack; Bolt tries: %s", error)
            return False
        delivery = Delivery(team_id, self._halts.stamp(team_id), body, dict(headers))
        if not self._queue.put(partial(self._dispatch, delivery, kept)):
            await self._intake.done(kept)  # full: Bolt keeps it again, before its ack
            return False
        self._counts.event_acked_early()
        return True

    def _verified(self, body: str, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The JSON body if its signature holds; None for anything Bolt should answer."""
        timestamp = headers.get("X-Slack-Request-Timestamp")
        signature = headers.get("X-Slack-Signature")
        if not body.startswith("{") or timestamp is None or not timestamp.isdigit():
            return None
        if not self._verifier.is_valid(body, timestamp, signature):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    async def _dispatch(self, delivery: Delivery, kept: Kept) -> None:
        """Put the delivery through Bolt; if that fails, try again in the background."""
        try:
            await self._through_bolt(delivery, kept, attempt=0)
        except Exception as error:
            log.warning("handling a received event failed (%s); trying again", error)
            self._spawn(self._retry(delivery, kept))

    async def _retry(self, delivery: Delivery, kept: Kept) -> None:
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await self._through_bolt(delivery, kept, attempt=attempts)

        try:
            await asyncio.sleep(self._backoff.delay(1))
            await retrying(attempt, self._backoff, self._counts, what="handling a received event")
        except Exception:
            log.error("a received event is handled again later, from the intake log")
            self._intake.strand(kept)

    async def _through_bolt(self, delivery: Delivery, kept: Kept, attempt: int) -> None:
        team_id = delivery.team_id
        if self._halts.stale(team_id, delivery.stamp):  # its workspace was forgotten meanwhile
            await self._intake.done(kept)
            return
        headers = delivery.headers
        if attempt:  # what Slack sends when it retries a delivery that failed
            headers = {
                **headers,
                "X-Slack-Retry-Num": str(attempt),
                "X-Slack-Retry-Reason": "http_error",
            }
        as_sent: dict[str, str | Sequence[str]] = {**headers}
        request = AsyncBoltRequest(
            body=delivery.body, headers=as_sent, context={intake.EARLY: kept}
        )
        with self._halts.running(team_id):
            response = await self._bolt.async_dispatch(request)
        if response.status >= 500:
            raise DispatchFailed(f"HTTP {response.status}")
        if intake.kept(request.context) is None:
            await self._intake.done(kept)  # Bolt refused it before any listener took it
