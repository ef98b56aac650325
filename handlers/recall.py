"""`/recall <question>`: acknowledged at once, answered ephemerally with the best matches."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from app.services import Services
from handlers.access_facts import AccessFacts
from handlers.recall_blocks import (
    USAGE,
    parse_more_value,
    recall_blocks,
    recall_mentions,
    recall_text,
)
from handlers.users import SlackUsers

log = logging.getLogger("lore.recall")

FAILED = "Sorry, /recall failed on my side. Please try again in a moment."


def register(
    app: AsyncApp, services: Services, access_facts: AccessFacts, users: SlackUsers
) -> None:
    async def answer(
        client: AsyncWebClient,
        respond: AsyncRespond,
        team_id: str,
        user_id: str,
        channel_id: str,
        question: str,
        offset: int,
    ) -> None:
        try:
            access = await access_facts.for_recall(client, team_id, user_id, channel_id)
            page = await services.recall.ask(question, access, offset)
            names = {
                mentioned: await users.name(client, team_id, mentioned)
                for mentioned in recall_mentions(page)
            }
            await respond(
                response_type="ephemeral",
                replace_original=True,
                text=recall_text(page, names),
                blocks=recall_blocks(page, time.time(), names),
            )
        except Exception:
            log.exception("/recall failed for %s", team_id)
            await respond(response_type="ephemeral", replace_original=True, text=FAILED)

    @app.command("/recall")
    async def recall(
        ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        question = (command.get("text") or "").strip()
        if not question:
            await ack(response_type="ephemeral", text=USAGE)
            return
        await ack(response_type="ephemeral", text=f"Searching for “{question}”…")
        services.background.spawn(
            answer(
                client,
                respond,
                command["team_id"],
                command["user_id"],
                command["channel_id"],
                question,
                0,
            ),
            name="recall",
        )

    @app.action("recall_more")
    async def more(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        question, offset = parse_more_value(body["actions"][0]["value"])
        team_id = (body.get("team") or {}).get("id") or body["user"]["team_id"]
        channel_id = (body.get("channel") or {}).get("id") or ""
        services.background.spawn(
            answer(client, respond, team_id, body["user"]["id"], channel_id, question, offset),
            name="recall-more",
        )

    @app.action(re.compile(r"^recall_open_\d+$"))
    async def opened(ack: AsyncAck) -> None:
        """The Open buttons are links; Slack still tells us they were clicked."""
        await ack()
