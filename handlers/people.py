"""Who is who in each workspace, from `users.list`: names and standing (admin, guest, another
organisation, deactivated) for everyone at once, so a channel's members are checked without one
`users.info` per member.

A workspace's directory is read when first needed (200 people a page), again in the background
once it is REFRESH_SECONDS old (answers keep coming from the old one meanwhile), and kept
current in between by the `user_change` and `team_join` events (`learn`). A read that fails
keeps what was known; with nothing known the directory answers None and callers fall back to
`users.info` or to the less trusted answer.

Slack lists only the workspace's own people in `users.list` (guests, bots and deactivated
accounts included); a member of another organisation met in a shared channel is not listed and
is looked up with `users.info`, whose answer is learnt here until the next read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from handlers.users import Standing, User, display_name, standing

log = logging.getLogger("lore.people")

REFRESH_SECONDS = 15 * 60.0
"""A directory older than this is read again (events keep it current in between)."""
RETRY_SECONDS = 60.0
"""After a failed read, the next try waits this long."""
PAGE_SIZE = 200
MAX_PAGES = 1000
RATE_LIMIT_TRIES = 3
MAX_RATE_LIMIT_WAIT = 30.0

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True)
class Someone:
    """What Lore keeps of a person: a name, a standing, and whether the account is deactivated."""

    name: str | None
    standing: Standing
    deleted: bool


def someone(user: User, team_id: str) -> Someone:
    return Someone(display_name(user), standing(user, team_id), bool(user.get("deleted")))


@dataclass
class _Workspace:
    people: dict[str, Someone] = field(default_factory=dict)
    read_at: float | None = None
    """When the last full read finished (monotonic); None: never."""
    failed_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reading: bool = False
    learnt_while_reading: dict[str, Someone] = field(default_factory=dict)


class PeopleDirectory:
    """Per-workspace people, from paged `users.list`, kept current by events."""

    def __init__(self, spawn: Spawn | None = None, refresh_seconds: float = REFRESH_SECONDS):
        self._spawn = spawn
        self._refresh_seconds = refresh_seconds
        self._workspaces: dict[str, _Workspace] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def find(self, client: AsyncWebClient, team_id: str, user_id: str) -> Someone | None:
        """The person, or None when the directory does not know them (or cannot be read and
        no event told of them)."""
        people = await self.everyone(client, team_id)
        if people is None:
            known = self._workspaces.get(team_id)  # what events told, if anything
            return known.people.get(user_id) if known else None
        return people.get(user_id)

    async def everyone(self, client: AsyncWebClient, team_id: str) -> dict[str, Someone] | None:
        """Everyone known in the workspace (read now if never read); None if Slack cannot say."""
        workspace = self._workspaces.setdefault(team_id, _Workspace())
        if workspace.read_at is None:
            async with workspace.lock:
                if workspace.read_at is None and not self._resting(workspace):
                    await self._read(client, team_id, workspace)
            if workspace.read_at is None:
                return None
        elif self._stale(workspace) and not workspace.reading and not self._resting(workspace):
            self._refresh_later(client, team_id, workspace)
        return workspace.people

    def learn(self, team_id: str, user: User) -> Someone | None:
        """A user object from an event or users.info: what is known of them now. Returns what
        was known before (None: they were unknown)."""
        user_id = user.get("id")
        if not isinstance(user_id, str) or not user_id:
            return None
        workspace = self._workspaces.setdefault(team_id, _Workspace())
        known = someone(user, team_id)
        before = workspace.people.get(user_id)
        workspace.people[user_id] = known
        if workspace.reading:
            workspace.learnt_while_reading[user_id] = known
        return before

    def forget_team(self, team_id: str) -> None:
        """The workspace uninstalled Lore (or its data was deleted)."""
        self._workspaces.pop(team_id, None)

    def _stale(self, workspace: _Workspace) -> bool:
        read_at = workspace.read_at
        return read_at is None or time.monotonic() - read_at >= self._refresh_seconds

    def _resting(self, workspace: _Workspace) -> bool:
        failed = workspace.failed_at
        return failed is not None and time.monotonic() - failed < RETRY_SECONDS

    def _refresh_later(self, client: AsyncWebClient, team_id: str, workspace: _Workspace) -> None:
        async def refresh() -> None:
            try:
                async with workspace.lock:
                    if self._stale(workspace):
                        await self._read(client, team_id, workspace)
            finally:
                workspace.reading = False

        workspace.reading = True  # one refresh at a time
        if self._spawn is not None:
            self._spawn(refresh())
            return
        task = asyncio.get_running_loop().create_task(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, client: AsyncWebClient, team_id: str, workspace: _Workspace) -> None:
        workspace.reading = True
        try:
            people = await self._list(client, team_id)
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as error:
            workspace.failed_at = time.monotonic()
            log.warning("users.list for %s failed: %s", team_id, _reason(error))
            return
        finally:
            workspace.reading = False
            learnt, workspace.learnt_while_reading = workspace.learnt_while_reading, {}
        people.update(learnt)  # events that arrived during the read are newer than its pages
        workspace.people = people
        workspace.read_at = time.monotonic()
        workspace.failed_at = None
        log.info("read %d people of %s", len(people), team_id)

    async def _list(self, client: AsyncWebClient, team_id: str) -> dict[str, Someone]:
        people: dict[str, Someone] = {}
        cursor: str | None = None
        for _page in range(MAX_PAGES):
            response = await self._page(client, cursor)
            for user in response.get("members") or []:
                if isinstance(user, dict) and isinstance(user.get("id"), str):
                    people[user["id"]] = someone(user, team_id)
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        else:
            log.warning(
                "%s has more than %d pages of people; the rest via users.info", team_id, MAX_PAGES
            )
        return people

    async def _page(self, client: AsyncWebClient, cursor: str | None) -> Any:
        """One page; when the client has no rate-limit retry handler of its own, Slack's
        Retry-After is waited out here (slack-sdk's handler otherwise already did)."""
        for attempt in range(RATE_LIMIT_TRIES):
            try:
                return await client.users_list(limit=PAGE_SIZE, cursor=cursor)
            except SlackApiError as error:
                wait = _retry_after(error)
                if wait is None or _retries_rate_limits(client) or attempt + 1 == RATE_LIMIT_TRIES:
                    raise
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")


def _retries_rate_limits(client: AsyncWebClient) -> bool:
    return any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers)


def _retry_after(error: SlackApiError) -> float | None:
    """Seconds to wait before asking again, for a rate-limited answer; None otherwise."""
    response = error.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After") or headers.get("retry-after") or "1"
    try:
        return min(max(float(raw), 0.0), MAX_RATE_LIMIT_WAIT)
    except (TypeError, ValueError):
        return 1.0


def _reason(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error"))
    return type(error).__name__
