"""Feedback buttons: a press is acknowledged at once, stored, and confirmed to the presser only.

The reply itself is left as it is, so everyone else in the thread can still vote on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.services import Services
from handlers.feedback_blocks import ACTION_ID
from memory.feedback import Verdict

log = logging.getLogger("lore.feedback")

SHOWN = {Verdict.HELPFUL: "helpful", Verdict.NOT_HELPFUL: "not helpful"}


def register(app: AsyncApp, services: Services) -> None:
    @app.action(ACTION_ID)
    async def on_feedback(
        ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        await ack()
        press = _Press.parse(body, context)
        if press is None:
            log.warning("feedback press without a reply or a known verdict; ignored")
            return
        services.background.spawn(_record(services, client, press), name="feedback")


@dataclass(frozen=True)
class _Press:
    """Who pressed which feedback button under which reply."""

    team_id: str
    channel_id: str
    thread_ts: str | None
    reply_ts: str
    user_id: str
    verdict: Verdict

    @classmethod
    def parse(cls, body: dict[str, Any], context: AsyncBoltContext) -> _Press | None:
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel_id = (body.get("channel") or {}).get("id") or container.get("channel_id")
        reply_ts = message.get("ts") or container.get("message_ts")
        user_id = (body.get("user") or {}).get("id")
        team_id = context.team_id or (body.get("team") or {}).get("id")
        value = next(
            (a.get("value") for a in body.get("actions") or [] if a.get("action_id") == ACTION_ID),
            None,
        )
        if not (channel_id and reply_ts and user_id and team_id):
            return None
        if value not in {verdict.value for verdict in Verdict}:
            return None
        thread_ts = message.get("thread_ts") or container.get("thread_ts")
        return cls(team_id, channel_id, thread_ts, reply_ts, user_id, Verdict(value))


async def _record(services: Services, client: AsyncWebClient, press: _Press) -> None:
    earlier = await services.feedback.vote(
        team_id=press.team_id,
        channel_id=press.channel_id,
        thread_ts=press.thread_ts,
        reply_ts=press.reply_ts,
        user_id=press.user_id,
        verdict=press.verdict,
    )
    try:
        await client.chat_postEphemeral(
            channel=press.channel_id,
            user=press.user_id,
            thread_ts=press.thread_ts,
            text=confirmation(press.verdict, earlier),
        )
    except SlackApiError as error:
        log.info("could not confirm feedback: %s", error.response.get("error"))


def confirmation(verdict: Verdict, earlier: Verdict | None) -> str:
    """What the presser sees: thanks, or that the earlier vote was replaced."""
    if earlier is None:
        return f"Thanks — marked {SHOWN[verdict]}."
    if earlier == verdict:
        return f"You already marked this answer {SHOWN[verdict]}."
    return f"Changed your feedback to {SHOWN[verdict]}."
