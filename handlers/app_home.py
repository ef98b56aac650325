"""The App Home: published when opened; admins edit and revert memory blocks and exclude channels.

Every view, action and submission builds the person's access value again (`AccessFacts`), so
only workspace admins and owners change anything: what the view showed them is never trusted.
Actions are acknowledged at once (an edit modal's submission after its quick write, so an error
can be shown in the modal), and the Home is republished after each.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.agent.access import Access
from app.services import Services
from handlers.access_facts import AccessFacts
from handlers.app_home_blocks import (
    EDIT_ACTION,
    EDIT_CALLBACK,
    EXCLUDE_ACTION,
    INCLUDE_ACTION,
    RETRACT_NOTE_ACTION,
    REVERT_ACTION,
    SHOW_BACKFILL_ACTION,
    SHOW_BLOCK_ACTION,
    SHOW_EXCLUDED_ACTION,
    SHOW_NOTES_ACTION,
    backfill_modal,
    block_reading_modal,
    edit_modal,
    excluded_modal,
    first_input,
    home_view,
    notes_modal,
    parse_edit,
    parse_revert,
)
from handlers.quiet_text import block_mentions, quiet_blocks
from memory.edits import EditError

log = logging.getLogger("lore.app_home")

ADMINS_ONLY = "Only workspace admins and owners can change Lore's memory and channels."


def register(app: AsyncApp, services: Services, access: AccessFacts) -> None:
    home = _Home(services, access)

    @app.event("app_home_opened")
    async def on_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("tab") == "home" and context.team_id and context.client:
            home.spawn(context.client, context.team_id, event["user"])

    @app.action(EDIT_ACTION)
    async def on_edit(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        await home.open_editor(context.client, *_who(body, context), body, _action(body))

    @app.action(REVERT_ACTION)
    async def on_revert(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        option = _action(body).get("selected_option") or {}
        home.spawn(context.client, *_who(body, context), revert=str(option.get("value") or ""))

    @app.action(EXCLUDE_ACTION)
    async def on_exclude(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        channel = str(_action(body).get("selected_conversation") or "")
        home.spawn(context.client, *_who(body, context), exclude=channel)

    @app.action(INCLUDE_ACTION)
    async def on_include(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        home.spawn(context.client, *_who(body, context), include=str(_action(body).get("value")))

    @app.action(RETRACT_NOTE_ACTION)
    async def on_retract(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        home.spawn(context.client, *_who(body, context), retract=str(_action(body).get("value")))

    @app.action(
        re.compile(
            f"^({SHOW_BLOCK_ACTION}|{SHOW_BACKFILL_ACTION}|{SHOW_EXCLUDED_ACTION}|"
            f"{SHOW_NOTES_ACTION})$"
        )
    )
    async def on_show(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        await home.open_reader(context.client, *_who(body, context), body, _action(body))

    @app.view(EDIT_CALLBACK)
    async def on_edit_saved(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        team_id, user_id = _who(body, context)
        error = await home.save_edit(context.client, team_id, user_id, view)
        if error is not None:
            await ack(response_action="errors", errors={first_input(view): error})
            return
        await ack()
        home.spawn(context.client, team_id, user_id, notice="Saved a new version.")


class _Home:
    """The App Home's work for one Bolt app: permission checks, store calls, publishing."""

    def __init__(self, services: Services, access: AccessFacts) -> None:
        self._services = services
        self._access = access

    def spawn(
        self,
        client: AsyncWebClient | None,
        team_id: str,
        user_id: str,
        *,
        notice: str | None = None,
        revert: str | None = None,
        exclude: str | None = None,
        include: str | None = None,
        retract: str | None = None,
    ) -> None:
        """Apply an admin's change (if any) and republish the Home, in the background."""
        if client is None or not team_id or not user_id:
            return
        change = self._change(client, team_id, user_id, revert, exclude, include, retract)
        self._services.background.spawn(
            self._then_publish(client, team_id, user_id, notice, change), name="app-home"
        )

    async def open_editor(
        self,
        client: AsyncWebClient | None,
        team_id: str,
        user_id: str,
        body: dict[str, Any],
        action: dict[str, Any],
    ) -> None:
        """Open the edit modal on the trigger (Slack allows 3 s), for admins only."""
        if client is None:
            return
        access = await self._access.for_home(client, team_id, user_id)
        if not access.admin:
            log.warning("refused a memory edit from non-admin %s", user_id)
            self.spawn(client, team_id, user_id, notice=ADMINS_ONLY)
            return
        try:
            block = await self._services.app_home.block(access, str(action.get("value")))
            await client.views_open(trigger_id=body["trigger_id"], view=edit_modal(block))
        except (EditError, SlackApiError, KeyError) as error:
            log.info("could not open the block editor: %s", _describe(error))
            self.spawn(
                client, team_id, user_id, notice=f"Could not open the editor: {_describe(error)}"
            )

    async def open_reader(
        self,
        client: AsyncWebClient | None,
        team_id: str,
        user_id: str,
        body: dict[str, Any],
        action: dict[str, Any],
    ) -> None:
        """Open a modal with all of what the Home tab cut: a memory block's text, every
        backfill row or every excluded channel, as this person may see them."""
        if client is None:
            return
        access = await self._access.for_home(client, team_id, user_id)
        try:
            if action.get("action_id") == SHOW_BLOCK_ACTION:
                block = await self._services.app_home.block(access, str(action.get("value")))
                view = block_reading_modal(block)
            else:
                snapshot = await self._services.app_home.snapshot(
                    access, lambda channel_id: self._kind(client, access, channel_id)
                )
                if action.get("action_id") == SHOW_BACKFILL_ACTION:
                    view = backfill_modal(snapshot.backfill)
                elif action.get("action_id") == SHOW_NOTES_ACTION:
                    view = notes_modal(snapshot.notes, admin=access.admin)
                else:
                    view = excluded_modal(snapshot.excluded)
            quiet = await self._quiet(client, team_id, view)
            await client.views_open(trigger_id=body["trigger_id"], view=quiet)
        except (EditError, SlackApiError, KeyError) as error:
            log.info("could not open the reader: %s", _describe(error))
            self.spawn(client, team_id, user_id, notice=f"Could not show it: {_describe(error)}")

    async def _quiet(
        self, client: AsyncWebClient, team_id: str, view: dict[str, Any]
    ) -> dict[str, Any]:
        """The view with people's mentions turned into their names (see `quiet_text`)."""
        names = {
            mentioned: await self._access.users.name(client, team_id, mentioned)
            for mentioned in block_mentions(view)
        }
        return quiet_blocks(view, names)

    async def save_edit(
        self, client: AsyncWebClient | None, team_id: str, user_id: str, view: dict[str, Any]
    ) -> str | None:
        """Store a submitted edit; None when saved, else the error to show in the modal."""
        access = await self._access.for_home(client, team_id, user_id) if client else None
        if access is None or not access.admin:
            log.warning("refused a memory edit submission from non-admin %s", user_id)
            return ADMINS_ONLY
        parsed = parse_edit(view)
        if parsed is None:
            return "This form is out of date; close it and press Edit again."
        label, version, text = parsed
        try:
            await self._services.app_home.edit_block(access, label, text, based_on=version)
        except EditError as error:
            return _sentence(str(error))
        return None

    async def _change(
        self,
        client: AsyncWebClient,
        team_id: str,
        user_id: str,
        revert: str | None,
        exclude: str | None,
        include: str | None,
        retract: str | None = None,
    ) -> str | None:
        """Apply one change for an admin; the notice to show, if any."""
        if revert is None and exclude is None and include is None and retract is None:
            return None
        access = await self._access.for_home(client, team_id, user_id)
        if not access.admin:
            log.warning("refused an App Home change from non-admin %s", user_id)
            return ADMINS_ONLY
        home = self._services.app_home
        try:
            if revert is not None:
                parsed = parse_revert(revert)
                if parsed is None:
                    return "That version could not be read; open the Home tab again."
                label, to_version, shown = parsed
                result = await home.revert_block(access, label, to_version, based_on=shown)
                return (
                    f"Restored *{label}* to version {to_version} as version {result.block.version}."
                )
            if exclude:
                deleted = await home.exclude_channel(team_id, exclude, user_id)
                return f"<#{exclude}> is no longer archived; {deleted} archived messages removed."
            if include:
                await home.include_channel(team_id, include)
                return f"<#{include}>: new messages are archived again."
            if retract:
                note = await home.retract_note(access, retract)
                return f"Retracted the note “{note.text[:80]}”."
        except EditError as error:
            return _sentence(str(error))
        return None

    async def _then_publish(
        self,
        client: AsyncWebClient,
        team_id: str,
        user_id: str,
        notice: str | None,
        change: Awaitable[str | None],
    ) -> None:
        notice = await change or notice
        access = await self._access.for_home(client, team_id, user_id)
        snapshot = await self._services.app_home.snapshot(
            access, lambda channel_id: self._kind(client, access, channel_id)
        )
        view = await self._quiet(
            client, team_id, home_view(snapshot, admin=access.admin, notice=notice)
        )
        try:
            await client.views_publish(user_id=user_id, view=view)
        except SlackApiError as error:
            log.warning("views.publish failed: %s", error.response.get("error"))

    async def _kind(self, client: AsyncWebClient, access: Access, channel_id: str) -> str:
        return await self._access.channel_types.of(client, access.team_id, channel_id)


def _who(body: dict[str, Any], context: AsyncBoltContext) -> tuple[str, str]:
    team_id = context.team_id or (body.get("team") or {}).get("id") or ""
    return team_id, (body.get("user") or {}).get("id") or ""


def _action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions") or [{}]
    return actions[0] if isinstance(actions[0], dict) else {}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error"))
    return str(error) if isinstance(error, EditError) else type(error).__name__
