"""The facts the access rule needs, looked up in Slack: who asks (admin, guest, another
organisation), where the answer goes (type, shared, who else reads it) and the asker's
conversations. The rule itself is `app.agent.access`; this module only asks Slack.

Every answer is cached per workspace for a short time (`ChannelTypes`, `Memberships`,
`SlackUsers`), and a look-up that fails counts as the less trusted answer. Who a channel's
members are comes from `conversations.members`; what they are, from the people directory
(`PeopleDirectory`, one `users.list` read per workspace), never one `users.info` per member.
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.agent.access import Access, Person, Venue
from handlers.channels import ChannelTypes
from handlers.membership import Memberships
from handlers.people import PeopleDirectory
from handlers.users import NAME_SECONDS, SlackUsers

log = logging.getLogger("lore.access")

MEMBER_PAGES = 50
LOOKUPS_AT_ONCE = 8
MAX_UNLISTED_LOOKUPS = 25
"""Members the directory does not know are looked up one by one (users.info) up to this many;
a channel with more is taken to have outsiders."""


class AccessFacts:
    """Builds `Access` values from Slack's current answers."""

    def __init__(
        self,
        channel_types: ChannelTypes,
        memberships: Memberships,
        users: SlackUsers,
        people: PeopleDirectory,
    ) -> None:
        self.channel_types = channel_types
        self.users = users
        self._memberships = memberships
        self._people = people

    async def for_turn(
        self,
        client: AsyncWebClient,
        team_id: str,
        user_id: str,
        channel_id: str,
        channel_type: str | None = None,
        bot_user_id: str | None = None,
    ) -> Access:
        """An answer to `user_id` posted in `channel_id` (`channel_type`: the event's hint)."""
        asker = await self.person(client, team_id, user_id)
        kind = await self.channel_types.of(client, team_id, channel_id, channel_type)
        if kind == "im":
            memberships = await self._conversations(client, team_id, asker)
            return Access.for_turn(team_id, asker, Venue(channel_id, kind), memberships)
        outsiders = await self.has_outsiders(client, team_id, channel_id, bot_user_id)
        return Access.for_turn(team_id, asker, Venue(channel_id, kind, outsiders), frozenset())

    async def for_recall(
        self, client: AsyncWebClient, team_id: str, user_id: str, channel_id: str
    ) -> Access:
        asker = await self.person(client, team_id, user_id)
        memberships = await self._conversations(client, team_id, asker)
        return Access.for_recall(team_id, asker, channel_id, memberships)

    async def for_home(self, client: AsyncWebClient, team_id: str, user_id: str) -> Access:
        viewer = await self.person(client, team_id, user_id)
        memberships = await self._memberships.every_conversation(client, team_id, user_id)
        return Access.for_home(team_id, viewer, memberships)

    async def person(self, client: AsyncWebClient, team_id: str, user_id: str) -> Person:
        standing = await self.users.standing(client, team_id, user_id)
        return Person(user_id, admin=standing.admin, outsider=standing.outsider)

    async def has_outsiders(
        self,
        client: AsyncWebClient,
        team_id: str,
        channel_id: str,
        bot_user_id: str | None = None,
    ) -> bool:
        """Whether the channel is shared with another organisation or has a guest or a member of
        another organisation."""
        facts = await self.channel_types.facts(client, team_id, channel_id)
        if facts.ext_shared:
            return True
        return await self.channel_types.has_outsiders(
            team_id,
            channel_id,
            lambda: self._members_include_outsider(client, team_id, channel_id, bot_user_id),
        )

    async def _conversations(
        self, client: AsyncWebClient, team_id: str, asker: Person
    ) -> frozenset[str]:
        """An outsider's every conversation; a member's private ones (public ones are open)."""
        if asker.outsider:
            return await self._memberships.every_conversation(client, team_id, asker.user_id)
        return await self._memberships.private_conversations(client, team_id, asker.user_id)

    async def _members_include_outsider(
        self, client: AsyncWebClient, team_id: str, channel_id: str, bot_user_id: str | None
    ) -> bool:
        try:
            members = await self._members(client, channel_id)
        except SlackApiError as error:
            log.warning(
                "conversations.members %s failed: %s", channel_id, error.response.get("error")
            )
            return True
        others = [m for m in members if m != bot_user_id]
        people = await self._people.everyone(client, team_id)
        if people is None:
            log.warning("no people directory for %s: %s counts as shared", team_id, channel_id)
            return True
        unlisted: list[str] = []
        for member in others:
            known = people.get(member)
            if known is None:
                unlisted.append(member)
            elif known.standing.outsider and not known.deleted:
                return True
        if len(unlisted) > MAX_UNLISTED_LOOKUPS:
            log.warning(
                "%d members of %s/%s are not in the directory: counted as outsiders",
                len(unlisted),
                team_id,
                channel_id,
            )
            return True
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def outsider(user_id: str) -> bool:
            async with gate:
                standing = await self.users.standing(client, team_id, user_id, max_age=NAME_SECONDS)
            return standing.outsider

        return any(await asyncio.gather(*(outsider(m) for m in unlisted)))

    async def _members(self, client: AsyncWebClient, channel_id: str) -> list[str]:
        members: list[str] = []
        cursor: str | None = None
        for _page in range(MEMBER_PAGES):
            response = await client.conversations_members(
                channel=channel_id, limit=200, cursor=cursor
            )
            members.extend(response.get("members") or [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return members
