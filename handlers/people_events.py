"""Slack's news about people, kept in the people directory as it arrives: `user_change` (a
profile, a role or a guest's status changed, an account was deactivated) and `team_join`
(someone joined the workspace). Each carries the whole user object, so no look-up is needed.

When what someone is changes (admin, guest, another organisation, deactivated), the cached
answers to "does this channel have outsiders" of their workspace are dropped, so the next
answer in any channel they read is decided on the new standing.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from handlers.channels import ChannelTypes
from handlers.people import PeopleDirectory, someone

log = logging.getLogger("lore.people")


def register(app: AsyncApp, people: PeopleDirectory, channel_types: ChannelTypes) -> None:
    async def changed(event: dict[str, Any], context: AsyncBoltContext) -> None:
        user = event.get("user")
        team_id = context.team_id or ""
        if not isinstance(user, dict) or not team_id:
            return
        before = people.learn(team_id, user)
        now = someone(user, team_id)
        if before is None or (before.standing, before.deleted) != (now.standing, now.deleted):
            channel_types.forget_outsiders(team_id)
        log.info("%s %s learnt: %s", event.get("type"), user.get("id"), now.standing)

    app.event("user_change")(changed)
    app.event("team_join")(changed)
