"""Messages and mentions: archive every message; answer mentions, DMs and threads Lore is in.

Listeners only parse and enqueue (no awaits), so Slack gets its 200 at once and the turns of
one thread keep their arrival order. A turn Lore will not run (queue full, or shutting down)
is answered with a short note in its thread instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from functools import partial
from re import Pattern
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from app import log_context
from app.agent.citations import linked_messages
from app.agent.ports import TurnRequest
from app.agent.turn import may_be_for_lore
from app.archive_queue import Settled, Stranded
from app.intake import Kept
from app.services import Services
from app.turns import HandBack, Turn
from handlers import intake
from handlers.access_facts import AccessFacts
from handlers.channels import ChannelTypes
from handlers.permalinks import WorkspaceUrls, permalink
from handlers.replay_check import lore_replies_after
from handlers.slack_history import SlackHistory
from handlers.slack_thread import SlackThread
from handlers.users import SlackUsers
from memory.archive import ArchivedMessage
from memory.reply_sources import Quote

NEW_MESSAGE_SUBTYPES = intake.NEW_MESSAGE_SUBTYPES
CHANGE_SUBTYPES = intake.CHANGE_SUBTYPES
HANDLED: dict[str, str | Sequence[str | Pattern[str] | None] | None] = {
    "type": "message",
    "subtype": [*NEW_MESSAGE_SUBTYPES, *CHANGE_SUBTYPES],
}
"""The message events this listener acts on; others go to later listeners (handlers.ignored)."""
HAND_BACK_TEXT = {
    HandBack.BUSY: "I'm busy right now — please ask again in a minute.",
    HandBack.RESTARTING: "I'm restarting and couldn't answer this — please ask again in a minute.",
}


def register(app: AsyncApp, services: Services, access: AccessFacts, users: SlackUsers) -> None:
    channel_types = access.channel_types
    workspace_urls = WorkspaceUrls()

    async def on_message(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        team_id = context.team_id or event.get("team") or ""
        subtype = event.get("subtype")
        kept = intake.kept(context)
        settled = _settled(services, kept)
        stranded = _stranded(services, kept)
        if subtype in CHANGE_SUBTYPES:
            services.archiving.submit_change(
                team_id, partial(_apply_change, services, team_id, event), settled, stranded
            )
            return
        if subtype not in NEW_MESSAGE_SUBTYPES or "ts" not in event:
            return
        incoming = _Incoming(event, context, team_id, workspace_urls)
        services.archiving.submit(
            team_id,
            incoming.channel_id,
            lambda: _archive(services, channel_types, users, client, incoming),
            reader=lambda: SlackHistory(client, team_id, users),
            ts=incoming.ts,
            thread_ts=incoming.thread_ts,
            settled=settled,
            stranded=stranded,
        )
        if incoming.from_bot or not incoming.user_id:
            return
        if not may_be_for_lore(
            incoming.channel_type_hint, incoming.ts, incoming.thread_ts, incoming.mentions_lore
        ):
            return
        held = services.intake.hold(kept) if kept is not None else None
        _submit_turn(services, access, client, incoming, _settled(services, held))

    app.event(HANDLED)(on_message)
    app.event("app_mention")(on_message)


def _submit_turn(
    services: Services,
    access: AccessFacts,
    client: AsyncWebClient,
    incoming: _Incoming,
    finished: Settled | None,
) -> None:
    """Queue the turn `incoming` may ask for; `finished` is awaited once it has run or been
    handed back (its intake entry may go then)."""

    async def then(work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            if finished is not None:
                await finished()

    channel_types, users = access.channel_types, access.users
    services.turns.submit(
        (incoming.team_id, incoming.channel_id, incoming.thread_ts),
        Turn(
            run=log_context.carried(
                lambda: then(_answer(services, channel_types, access, users, client, incoming))
            ),
            hand_back=lambda reason: then(_hand_back(services, client, incoming, reason)),
        ),
    )


async def _apply_change(services: Services, team_id: str, event: dict[str, Any]) -> None:
    """An edit updates the archived text; a deletion (or a parent turned tombstone) removes it.
    Slack's order of the changes is their `event_ts`: a change older than one already kept
    for the message applies that newer one instead."""
    channel_id = event["channel"]
    version = str(event.get("event_ts") or event.get("ts") or "")
    if event["subtype"] == "message_deleted":
        await services.ingest.delete(team_id, channel_id, event["deleted_ts"], version)
        return
    changed = event["message"]
    if changed.get("subtype") == "tombstone":
        await services.ingest.delete(team_id, channel_id, changed["ts"], version)
    else:
        await services.ingest.update_text(
            team_id, channel_id, changed["ts"], changed.get("text") or "", version
        )


class _Incoming:
    """The fields of a new message event that Lore uses."""

    def __init__(
        self,
        event: dict[str, Any],
        context: AsyncBoltContext,
        team_id: str,
        workspace_urls: WorkspaceUrls,
    ) -> None:
        self.team_id = team_id
        self.channel_id: str = event["channel"]
        self.channel_type_hint: str | None = event.get("channel_type")
        self.ts: str = event["ts"]
        self.thread_ts: str = event.get("thread_ts") or event["ts"]
        self.in_thread = "thread_ts" in event
        self.user_id: str | None = event.get("user")
        self.text: str = event.get("text") or ""
        self.from_bot = bool(event.get("bot_id"))
        profile = event.get("bot_profile")
        bot_name = event.get("username") or (profile.get("name") if profile else None)
        self.bot_name: str | None = bot_name if isinstance(bot_name, str) and bot_name else None
        self.bot_user_id = context.bot_user_id
        self._known_url = context.authorize_result.url if context.authorize_result else None
        self._workspace_urls = workspace_urls

    async def workspace_url(self, client: AsyncWebClient) -> str | None:
        return await self._workspace_urls.of(client, self.team_id, self._known_url)

    @property
    def mentions_lore(self) -> bool:
        return bool(self.bot_user_id) and f"<@{self.bot_user_id}>" in self.text


async def _archive(
    services: Services,
    channel_types: ChannelTypes,
    users: SlackUsers,
    client: AsyncWebClient,
    incoming: _Incoming,
) -> None:
    if await services.app_home.is_excluded(incoming.team_id, incoming.channel_id):
        return  # an admin excluded this channel from the archive (App Home)
    channel_type = await channel_types.of(
        client, incoming.team_id, incoming.channel_id, incoming.channel_type_hint
    )
    author = incoming.bot_name or await users.name(client, incoming.team_id, incoming.user_id)
    await services.ingest.add(
        ArchivedMessage(
            team_id=incoming.team_id,
            channel_id=incoming.channel_id,
            channel_type=channel_type,
            ts=incoming.ts,
            text=incoming.text,
            user_id=incoming.user_id,
            thread_ts=incoming.thread_ts if incoming.in_thread else None,
            permalink=permalink(
                await incoming.workspace_url(client),
                incoming.channel_id,
                incoming.ts,
                incoming.thread_ts if incoming.in_thread else None,
            ),
            is_bot=incoming.from_bot,
            user_name=author,
        )
    )


async def _hand_back(
    services: Services, client: AsyncWebClient, incoming: _Incoming, reason: HandBack
) -> None:
    """Tell the asker, in their thread, that Lore will not answer this message and why (not
    when the workspace is being forgotten)."""
    if reason not in HAND_BACK_TEXT:
        return
    if not await services.askers.expects_answer(
        incoming.team_id,
        incoming.channel_id,
        incoming.thread_ts,
        mentioned=incoming.mentions_lore,
        direct=incoming.channel_type_hint == "im",
    ):
        return
    services.metrics.turn_handed_back(reason.value)
    await client.chat_postMessage(
        channel=incoming.channel_id, thread_ts=incoming.thread_ts, text=HAND_BACK_TEXT[reason]
    )


async def _answer(
    services: Services,
    channel_types: ChannelTypes,
    access: AccessFacts,
    users: SlackUsers,
    client: AsyncWebClient,
    incoming: _Incoming,
) -> None:
    user_id = incoming.user_id
    assert user_id is not None
    channel_type = await channel_types.of(
        client, incoming.team_id, incoming.channel_id, incoming.channel_type_hint
    )
    request = TurnRequest(
        team_id=incoming.team_id,
        channel_id=incoming.channel_id,
        channel_type=channel_type,
        thread_ts=incoming.thread_ts,
        ts=incoming.ts,
        user_id=user_id,
        text=incoming.text,
    )
    thread = SlackThread(
        client,
        team_id=incoming.team_id,
        channel_id=incoming.channel_id,
        thread_ts=incoming.thread_ts,
        user_id=user_id,
        bot_user_id=incoming.bot_user_id,
        workspace_url=await incoming.workspace_url(client),
        names=lambda named: users.name(client, incoming.team_id, named),
    )
    await services.agent.run(
        request,
        thread,
        mentioned=incoming.mentions_lore,
        access=lambda: access.for_turn(
            client,
            incoming.team_id,
            user_id,
            incoming.channel_id,
            channel_type,
            incoming.bot_user_id,
        ),
    )


def _settled(services: Services, kept: Kept | None) -> Settled | None:
    """What tells the intake that a kept message event is archived."""
    if kept is None:
        return None
    return lambda: services.intake.done(kept)


def _stranded(services: Services, kept: Kept | None) -> Stranded | None:
    """What hands an archive job whose retries ran out to the intake, to be run again later."""
    if kept is None:
        return None
    return lambda job: services.intake.strand(kept, job)


async def archive_kept(
    services: Services,
    channel_types: ChannelTypes,
    users: SlackUsers,
    workspace_urls: WorkspaceUrls,
    client: AsyncWebClient,
    team_id: str,
    event: dict[str, Any],
) -> None:
    """Archive a message event the intake kept and a process that is gone did not archive,
    as the listener would have; a new message already archived is left as it is (an edit
    applied since must not be undone)."""
    if event.get("subtype") in CHANGE_SUBTYPES:
        await _apply_change(services, team_id, event)
        return
    if await services.ingest.archived(team_id, event["channel"], event["ts"]):
        return
    incoming = _Incoming(event, AsyncBoltContext(), team_id, workspace_urls)
    await _archive(services, channel_types, users, client, incoming)


async def answer_kept(
    services: Services,
    access: AccessFacts,
    workspace_urls: WorkspaceUrls,
    client: AsyncWebClient,
    team_id: str,
    payload: dict[str, Any],
) -> None:
    """Answer a question a process that is gone acknowledged and did not answer, as the
    listener would have; return once it is answered (or handed back). A question with one of
    Lore's replies archived after it was answered already; so was one whose reply was posted
    (that reply is archived now, from Slack)."""
    event = payload["event"]
    if event.get("subtype") not in NEW_MESSAGE_SUBTYPES or "ts" not in event:
        return
    context = AsyncBoltContext(bot_user_id=payload.get("bot_user_id"))
    incoming = _Incoming(event, context, team_id, workspace_urls)
    if incoming.from_bot or not incoming.user_id:
        return
    if not may_be_for_lore(
        incoming.channel_type_hint, incoming.ts, incoming.thread_ts, incoming.mentions_lore
    ):
        return
    if await services.ingest.lore_replied(
        team_id, incoming.channel_id, incoming.thread_ts, incoming.ts
    ):
        return
    if await services.askers.answered(
        team_id, incoming.channel_id, incoming.thread_ts, incoming.ts
    ):
        await _archive_posted_replies(services, access.channel_types, client, incoming)
        return
    answered = asyncio.get_running_loop().create_future()

    async def finished() -> None:
        if not answered.done():
            answered.set_result(None)

    _submit_turn(services, access, client, incoming, finished)
    await answered


async def _archive_posted_replies(
    services: Services, channel_types: ChannelTypes, client: AsyncWebClient, incoming: _Incoming
) -> None:
    """Archive the replies Lore posted after the question and the archive lacks (their process
    died between posting and archiving them), as the turn would have."""
    team_id, channel_id = incoming.team_id, incoming.channel_id
    bot_user_id = incoming.bot_user_id
    if bot_user_id is None or await services.app_home.is_excluded(team_id, channel_id):
        return
    posted = await lore_replies_after(
        client, channel_id, incoming.thread_ts, incoming.ts, bot_user_id
    )
    if not posted:
        return
    channel_type = await channel_types.of(client, team_id, channel_id, incoming.channel_type_hint)
    workspace_url = await incoming.workspace_url(client)
    for message in posted:
        ts, text = str(message["ts"]), str(message.get("text") or "")
        if await services.ingest.archived(team_id, channel_id, ts):
            continue
        reply = ArchivedMessage.lore_reply(
            team_id,
            channel_id,
            channel_type,
            ts,
            text,
            thread_ts=incoming.thread_ts,
            permalink=permalink(workspace_url, channel_id, ts, incoming.thread_ts),
        )
        # the messages its sources link to, quoted text unknown: any edit of one takes it out
        quotes = [Quote(c, source_ts) for c, source_ts in linked_messages(text)]
        await services.ingest.add_reply(reply, quotes)
