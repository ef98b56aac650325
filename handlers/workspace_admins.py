"""Whether a person is a workspace admin or owner, from `users.info`, cached for a short time."""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("lore.admins")

TTL_SECONDS = 60.0


class WorkspaceAdmins:
    """users.info per (team, user), remembered for a minute."""

    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self._ttl = ttl
        self._known: dict[tuple[str, str], tuple[bool, float]] = {}

    async def is_admin(self, client: AsyncWebClient, team_id: str, user_id: str) -> bool:
        """True for admins, owners and the primary owner; False for others and on errors."""
        key = (team_id, user_id)
        known = self._known.get(key)
        if known and known[1] > time.monotonic():
            return known[0]
        try:
            user = (await client.users_info(user=user_id)).get("user") or {}
        except SlackApiError as error:
            log.info("users.info for an admin check failed: %s", error.response.get("error"))
            return False
        admin = bool(
            not user.get("deleted")
            and (user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        )
        self._known[key] = (admin, time.monotonic() + self._ttl)
        return admin
