"""People's names, admin rights and standing (guest, another organisation), from the
workspace's people directory (`handlers.people`, kept current by Slack's events) and, for
someone it does not know, one cached `users.info` per (team, user).

For a `users.info` answer each caller says how old an answer it accepts: a name may be an hour
old (a rename reaches new messages within the hour), an admin check or an asker's standing at
most a minute.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

if TYPE_CHECKING:
    from handlers.people import PeopleDirectory, Someone

NAME_SECONDS = 3600.0
ADMIN_SECONDS = 60.0
MAX_USERS = 50_000

log = logging.getLogger("lore.users")

User = dict[str, Any]


def display_name(user: User) -> str | None:
    """A user's name as people write it: the real name, else the display name, else the handle."""
    profile = user.get("profile")
    if not isinstance(profile, dict):
        profile = {}
    for candidate in (
        profile.get("real_name"),
        user.get("real_name"),
        profile.get("display_name"),
        user.get("name"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def is_admin(user: User) -> bool:
    """Admins, owners and the primary owner, unless deactivated."""
    return bool(
        not user.get("deleted")
        and (user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
    )


def is_guest(user: User) -> bool:
    """Multi-channel (`is_restricted`) and single-channel (`is_ultra_restricted`) guests."""
    return bool(user.get("is_restricted") or user.get("is_ultra_restricted"))


@dataclass(frozen=True)
class Standing:
    """What a person is to the workspace: an admin, or an outsider (guest, other organisation)."""

    admin: bool
    outsider: bool


UNKNOWN = Standing(admin=False, outsider=True)
"""Whom Slack could not describe: treated as an outsider, so nothing is shown they may not see."""


def standing(user: User, team_id: str) -> Standing:
    if not user.get("id"):
        return UNKNOWN
    home = user.get("team_id")
    foreign = isinstance(home, str) and bool(home) and home != team_id
    foreign = foreign or bool(user.get("is_stranger"))
    return Standing(admin=is_admin(user) and not foreign, outsider=is_guest(user) or foreign)


class SlackUsers:
    """Names and standing from the people directory (when given one), else from users.info
    answers by (team, user), the most recent MAX_USERS kept."""

    def __init__(self, directory: PeopleDirectory | None = None) -> None:
        self._directory = directory
        self._known: OrderedDict[tuple[str, str], tuple[User, float]] = OrderedDict()

    async def name(self, client: AsyncWebClient, team_id: str, user_id: str | None) -> str | None:
        """The user's name; after a failed lookup the last one known, or None."""
        if not user_id:
            return None
        listed = await self._listed(client, team_id, user_id)
        if listed is not None:
            return listed.name
        try:
            return display_name(await self._info(client, team_id, user_id, NAME_SECONDS))
        except SlackApiError as error:
            log.warning("users.info %s failed: %s", user_id, error.response.get("error"))
            known = self._known.get((team_id, user_id))
            return display_name(known[0]) if known else None

    async def is_admin(self, client: AsyncWebClient, team_id: str, user_id: str) -> bool:
        """True for admins and owners; False for others and when Slack cannot tell."""
        return (await self.standing(client, team_id, user_id)).admin

    async def standing(
        self,
        client: AsyncWebClient,
        team_id: str,
        user_id: str,
        *,
        max_age: float = ADMIN_SECONDS,
    ) -> Standing:
        """Admin or not, outsider or not; after a failed lookup the last answer known, else an
        outsider who is not an admin."""
        listed = await self._listed(client, team_id, user_id)
        if listed is not None:
            return listed.standing
        try:
            return standing(await self._info(client, team_id, user_id, max_age), team_id)
        except SlackApiError as error:
            log.warning("users.info %s failed: %s", user_id, error.response.get("error"))
            known = self._known.get((team_id, user_id))
            return standing(known[0], team_id) if known else UNKNOWN

    async def _listed(self, client: AsyncWebClient, team_id: str, user_id: str) -> Someone | None:
        if self._directory is None:
            return None
        return await self._directory.find(client, team_id, user_id)

    async def _info(
        self, client: AsyncWebClient, team_id: str, user_id: str, max_age: float
    ) -> User:
        key = (team_id, user_id)
        known = self._known.get(key)
        if known and time.monotonic() - known[1] <= max_age:
            return known[0]
        user = (await client.users_info(user=user_id)).get("user") or {}
        self._known[key] = (user, time.monotonic())
        self._known.move_to_end(key)
        while len(self._known) > MAX_USERS:
            self._known.popitem(last=False)
        if self._directory is not None and user.get("id") == user_id:
            self._directory.learn(team_id, user)
        return user
