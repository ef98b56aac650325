"""Channel changes that change who may read what: made private or public, shared with another
organisation or unshared, archived, deleted.

How Slack tells the app (Events API):
- a conversion is a `message` in the channel, subtype `channel_convert_to_private` (its
  `channel_type` already `group`) or `channel_convert_to_public`; the channel keeps its id;
- `channel_shared` / `channel_unshared` (`is_ext_shared` says whether it is still shared);
- `channel_deleted` (public) / `group_deleted` (private);
- `channel_archive` / `group_archive` and their `*_unarchive` (the archived channel stays
  readable in Slack, so its messages stay searchable; only cached facts are refreshed).

Each change is applied while the event is handled: the archive's kind of every message of a
converted channel changes in both indexes, a deleted channel's messages (and Lore's replies that
quoted them) go, and the cached channel type and members' private conversations are forgotten.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from app.services import Services
from handlers.channels import ChannelTypes
from handlers.membership import Memberships

log = logging.getLogger("lore.channels")

CONVERSIONS = {"channel_convert_to_private": "group", "channel_convert_to_public": "channel"}
DELETIONS = ("channel_deleted", "group_deleted")
REFRESHES = (
    "channel_shared",
    "channel_unshared",
    "channel_archive",
    "group_archive",
    "channel_unarchive",
    "group_unarchive",
)


def register(
    app: AsyncApp, services: Services, channel_types: ChannelTypes, memberships: Memberships
) -> None:
    """The conversion subtypes are ones `handlers.messages` leaves to later listeners."""

    def forget(team_id: str, channel_id: str) -> None:
        channel_types.forget(team_id, channel_id)
        memberships.forget_team(team_id)

    async def converted(event: dict[str, Any], context: AsyncBoltContext) -> None:
        team_id, channel_id = _team(event, context), event["channel"]
        kind = CONVERSIONS[event["subtype"]]
        forget(team_id, channel_id)
        changed = await services.ingest.set_channel_type(team_id, channel_id, kind)
        log.info(
            "%s/%s is now %s: %d archived messages changed", team_id, channel_id, kind, changed
        )

    async def deleted(event: dict[str, Any], context: AsyncBoltContext) -> None:
        team_id, channel_id = _team(event, context), event["channel"]
        forget(team_id, channel_id)
        removed = await services.ingest.remove_channel(team_id, channel_id)
        log.info("%s/%s was deleted: %d archived messages removed", team_id, channel_id, removed)

    async def refreshed(event: dict[str, Any], context: AsyncBoltContext) -> None:
        forget(_team(event, context), event["channel"])

    app.event({"type": "message", "subtype": list(CONVERSIONS)})(converted)
    for event_type in DELETIONS:
        app.event(event_type)(deleted)
    for event_type in REFRESHES:
        app.event(event_type)(refreshed)


def _team(event: dict[str, Any], context: AsyncBoltContext) -> str:
    return context.team_id or event.get("team") or ""
