"""What Slack shows now of a message a dead process left in the intake.

While no process ran, the message may have been deleted, its `message_deleted` then reaching
no one (Slack gives up after three retries): one `conversations.replies` at the message tells
whether it is still there. And a process may have died between posting its reply to a question
and archiving it: the replies Lore posted after the question are read back from Slack.
"""

from __future__ import annotations

import enum
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

GONE = frozenset({"thread_not_found", "message_not_found"})
"""Errors that say the message is no longer in Slack."""
UNREADABLE = frozenset({"channel_not_found", "not_in_channel"})
"""Errors that say Lore may no longer read the channel (nor answer in it)."""


class Now(enum.Enum):
    WAITING = "waiting"  # the message is there
    DELETED = "deleted"  # the message is no longer in Slack
    UNREADABLE = "unreadable"  # Lore cannot read the channel any more


async def in_slack_now(client: AsyncWebClient, channel_id: str, thread_ts: str, ts: str) -> Now:
    """Whether Slack still shows the message `ts` of the thread `thread_ts`; raises on other
    Web API errors (the replay is tried again later)."""
    try:
        response = await client.conversations_replies(
            channel=channel_id, ts=thread_ts, oldest=ts, latest=ts, inclusive=True, limit=2
        )
    except SlackApiError as error:
        reason = error.response.get("error")
        if reason in GONE:
            return Now.DELETED
        if reason in UNREADABLE:
            return Now.UNREADABLE
        raise
    messages: list[dict[str, Any]] = response.get("messages") or []
    if any(m.get("ts") == ts and m.get("subtype") != "tombstone" for m in messages):
        return Now.WAITING
    return Now.DELETED


async def lore_replies_after(
    client: AsyncWebClient, channel_id: str, thread_ts: str, ts: str, bot_user_id: str
) -> list[dict[str, Any]]:
    """The messages of Lore (`bot_user_id`) after the message `ts` in its thread, as Slack
    shows them now (the first 200); none when the thread is gone or cannot be read."""
    try:
        response = await client.conversations_replies(
            channel=channel_id, ts=thread_ts, oldest=ts, limit=200
        )
    except SlackApiError as error:
        if error.response.get("error") in GONE | UNREADABLE:
            return []
        raise
    messages: list[dict[str, Any]] = response.get("messages") or []
    return [
        m for m in messages if m.get("user") == bot_user_id and float(m.get("ts") or 0) > float(ts)
    ]
