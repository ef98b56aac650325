"""Authors' names for the archive, from a cached users.info (events carry only user ids)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

TTL_SECONDS = 3600.0  # names change rarely; a rename reaches new messages within the hour
MAX_USERS = 50_000

log = logging.getLogger("lore.user_names")


def display_name(user: dict[str, Any]) -> str | None:
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


class UserNames:
    """Remembers each user's name for an hour; a failed lookup gives None and is retried later."""

    def __init__(self) -> None:
        self._known: OrderedDict[tuple[str, str], tuple[str | None, float]] = OrderedDict()

    async def of(self, client: AsyncWebClient, team_id: str, user_id: str | None) -> str | None:
        if not user_id:
            return None
        key = (team_id, user_id)
        known = self._known.get(key)
        if known and known[1] > time.monotonic():
            return known[0]
        try:
            name = display_name((await client.users_info(user=user_id))["user"])
        except SlackApiError as error:
            log.warning("users.info %s failed: %s", user_id, error.response.get("error"))
            return known[0] if known else None
        self._known[key] = (name, time.monotonic() + TTL_SECONDS)
        self._known.move_to_end(key)
        while len(self._known) > MAX_USERS:
            self._known.popitem(last=False)
        return name
