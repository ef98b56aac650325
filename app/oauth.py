"""Multi-workspace installs: Bolt's OAuth flow on slack-sdk's SQLAlchemy stores, token rotation.

slack-sdk ships async SQLAlchemy stores (`AsyncSQLAlchemyInstallationStore`,
`AsyncSQLAlchemyOAuthStateStore`), so they run on Lore's own async engine (SQLite or PostgreSQL).
Bolt refreshes expiring tokens in its authorize step; `LockedTokenRotator` runs the refreshes of
one workspace one at a time across processes and reuses a refresh another process just made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import time
from typing import Any
from urllib.parse import urljoin

from redis.asyncio import Redis
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_callback_options import (
    AsyncCallbackOptions,
    AsyncSuccessArgs,
    DefaultAsyncCallbackOptions,
)
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from memory.locks import LocalLocks, RedisLocks, WorkspaceLocks
from memory.schema_lock import lock_schema

log = logging.getLogger("lore.oauth")


@dataclass(frozen=True)
class OAuthCredentials:
    """What the OAuth install flow needs: the app's client id/secret and how to reach Slack."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    signing_secret: str | None
    api_url: str
    app_token: str | None = None
    redirect_uri: str | None = None
    state_expiration_seconds: int = 600
    token_rotation_minutes: int = 120

    def __repr__(self) -> str:
        return f"OAuthCredentials(client_id={self.client_id!r}, api_url={self.api_url!r})"

    @property
    def authorization_url(self) -> str:
        """Slack's authorize page beside the Web API: https://slack.com/oauth/v2/authorize."""
        return urljoin(self.api_url, "../oauth/v2/authorize")


class Installations:
    """The installations Bolt saved, on Lore's SQL engine (slack-sdk's async SQLAlchemy store)."""

    def __init__(self, engine: AsyncEngine, client_id: str, state_seconds: int = 600) -> None:
        self._engine = engine
        self.store = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=engine)
        self.states = AsyncSQLAlchemyOAuthStateStore(
            expiration_seconds=state_seconds, engine=engine
        )

    async def create_tables(self) -> None:
        """Create the installation, bot and OAuth state tables if missing (one creator at a
        time across processes)."""
        async with self._engine.begin() as connection:
            await lock_schema(connection)
            await connection.run_sync(self.store.metadata.create_all)
            await connection.run_sync(self.states.metadata.create_all)

    async def find(self, team_id: str, enterprise_id: str | None = None) -> Installation | None:
        """The newest installation of one workspace."""
        return await self.store.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id
        )

    async def delete_installation(self, team_id: str, enterprise_id: str | None = None) -> None:
        """Forget a workspace's installation and bot tokens (used on uninstall)."""
        await self.store.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        await self.store.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    async def delete_team(self, team_id: str) -> None:
        """`WorkspaceData`'s per-store deletion: every installation and bot of the workspace,
        by its enterprise and team ids (an Enterprise Grid workspace is stored under its
        enterprise's id, a standalone one under none)."""
        for enterprise_id in await self.enterprises_of(team_id):
            await self.delete_installation(team_id, enterprise_id)

    async def enterprises_of(self, team_id: str) -> set[str | None]:
        """The enterprise ids the workspace's installations and bots are stored under."""
        store = self.store
        found: set[str | None] = {None}
        async with store.engine.connect() as connection:
            for table in (store.installations, store.bots):
                rows = await connection.execute(
                    select(table.c.enterprise_id)
                    .where(table.c.client_id == store.client_id, table.c.team_id == team_id)
                    .distinct()
                )
                found.update(row[0] for row in rows)
        return found


def _expiring(installation: Installation, minutes: int) -> bool:
    deadline = time() + minutes * 60
    bot = installation.bot_token_expires_at
    user = installation.user_token_expires_at
    return (bot is not None and bot <= deadline) or (user is not None and user <= deadline)


class LockedTokenRotator(AsyncTokenRotator):
    """slack-sdk's rotator, one workspace at a time: lock, re-read, refresh only if still needed.

    After taking the workspace's refresh lock it re-reads the installation: when another process
    has refreshed meanwhile, its tokens are used and the refresh token is not spent again. A
    refresh is saved before the lock is released, so the next holder always sees it.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        client: AsyncWebClient,
        installations: Installations,
        locks: WorkspaceLocks,
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret, client=client)
        self._installations = installations
        self._locks = locks

    async def perform_token_rotation(
        self, *, installation: Installation, minutes_before_expiration: int = 120
    ) -> Installation | None:
        if not _expiring(installation, minutes_before_expiration):
            return None
        key = f"token-refresh:{installation.enterprise_id or '-'}:{installation.team_id or '-'}"
        async with self._locks.hold(key):
            stored = await self._installations.store.async_find_installation(
                enterprise_id=installation.enterprise_id,
                team_id=installation.team_id,
                user_id=installation.user_id,
                is_enterprise_install=installation.is_enterprise_install,
            )
            current = _with_stored_tokens(installation, stored)
            if _refreshed_elsewhere(installation, current):
                return current
            rotated = await super().perform_token_rotation(
                installation=current, minutes_before_expiration=minutes_before_expiration
            )
            if rotated is not None:
                await self._installations.store.async_save(rotated)
                log.info("refreshed the tokens of workspace %s", installation.team_id)
            return rotated


def _with_stored_tokens(seen: Installation, stored: Installation | None) -> Installation:
    """`seen` with the token fields as they are stored now."""
    if stored is None:
        return seen
    current = Installation(**seen.to_dict_for_copying())
    current.bot_token = stored.bot_token
    current.bot_refresh_token = stored.bot_refresh_token
    current.bot_token_expires_at = stored.bot_token_expires_at
    if seen.user_token is not None and stored.user_id == seen.user_id:
        current.user_token = stored.user_token
        current.user_refresh_token = stored.user_refresh_token
        current.user_token_expires_at = stored.user_token_expires_at
    return current


def _refreshed_elsewhere(seen: Installation, current: Installation) -> bool:
    return current.bot_token != seen.bot_token or current.user_token != seen.user_token


def refresh_locks(redis: Redis | None) -> WorkspaceLocks:
    """Locks for token refreshes: Redis across processes, asyncio in one process."""
    return RedisLocks(redis, timeout=60.0, wait=90.0) if redis is not None else LocalLocks()


class WorkspaceTokens:
    """Bot tokens for work outside a Slack request (e.g. backfill), refreshed first when due."""

    def __init__(
        self, installations: Installations, rotator: LockedTokenRotator, minutes: int
    ) -> None:
        self._installations = installations
        self._rotator = rotator
        self._minutes = minutes

    async def bot_token(self, team_id: str) -> str | None:
        """The workspace's current bot token; None when it has not installed Lore."""
        installation = await self._installations.find(team_id)
        if installation is None:
            return None
        rotated = await self._rotator.perform_token_rotation(
            installation=installation, minutes_before_expiration=self._minutes
        )
        return (rotated or installation).bot_token


def oauth_settings(
    credentials: OAuthCredentials,
    installations: Installations,
    rotator: LockedTokenRotator,
    on_installed: Callable[[Installation], None] | None = None,
) -> AsyncOAuthSettings:
    """Bolt's OAuth settings: `/slack/install`, `/slack/oauth_redirect`, stores on our engine.

    `on_installed` is called (it must not block) with each completed installation, before
    Bolt's own success page is shown.
    """
    settings = AsyncOAuthSettings(
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        scopes=list(credentials.scopes),
        user_scopes=[],
        redirect_uri=credentials.redirect_uri,
        install_page_rendering_enabled=False,
        authorization_url=credentials.authorization_url,
        installation_store=installations.store,
        token_rotation_expiration_minutes=credentials.token_rotation_minutes,
        state_store=installations.states,
        state_expiration_seconds=credentials.state_expiration_seconds,
    )
    authorize = SingleFlightAuthorize(
        logger=log,
        installation_store=installations.store,
        token_rotation_expiration_minutes=credentials.token_rotation_minutes,
        cache_enabled=True,  # one auth.test per bot token, not one per event
    )
    authorize.token_rotator = rotator
    settings.authorize = authorize
    if on_installed is not None:
        settings.callback_options = _calling_back(settings, on_installed)
    return settings


class SingleFlightAuthorize(AsyncInstallationStoreAuthorize):
    """Bolt's authorize, where concurrent first authorisations of one token share one auth.test.

    Bolt caches an authorisation per token only once its `auth.test` has answered, so two events
    arriving together (a mention is delivered as `message` and `app_mention`) would each call it.
    Here the second waits for the first one's call instead.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._flights: dict[str, asyncio.Future[AsyncSlackResponse]] = {}

    async def __call__(self, *, context: AsyncBoltContext, **lookup: Any) -> AuthorizeResult | None:
        shared = AsyncBoltContext(context)
        shared["client"] = _SharedAuthTest(context.client, self._flights)
        try:
            return await super().__call__(context=shared, **lookup)
        finally:
            # by now the result is in Bolt's cache; a failed call may be tried again
            for token, flight in list(self._flights.items()):
                if flight.done():
                    del self._flights[token]


class _SharedAuthTest(AsyncWebClient):
    """A copy of Bolt's per-request client whose `auth.test` joins one already in flight."""

    def __init__(
        self, client: AsyncWebClient, flights: dict[str, asyncio.Future[AsyncSlackResponse]]
    ) -> None:
        super().__init__(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            ssl=client.ssl,
            proxy=client.proxy,
            session=client.session,
            trust_env_in_session=client.trust_env_in_session,
            headers=client.headers,
            team_id=client.default_params.get("team_id"),
            logger=client.logger,
            retry_handlers=client.retry_handlers,
        )
        self._flights = flights

    async def auth_test(self, **kwargs: Any) -> AsyncSlackResponse:
        token = kwargs.get("token") or self.token or ""
        flight = self._flights.get(token)
        if flight is None:
            flight = asyncio.ensure_future(super().auth_test(**kwargs))
            self._flights[token] = flight
        return await asyncio.shield(flight)


def _calling_back(
    settings: AsyncOAuthSettings, on_installed: Callable[[Installation], None]
) -> AsyncCallbackOptions:
    """Bolt's default success and failure pages, with `on_installed` called on success."""
    default = DefaultAsyncCallbackOptions(
        logger=log,
        state_utils=settings.state_utils,
        redirect_uri_page_renderer=settings.redirect_uri_page_renderer,
    )

    async def success(args: AsyncSuccessArgs) -> BoltResponse:
        on_installed(args.installation)
        return await default.success(args)

    return AsyncCallbackOptions(success=success, failure=default.failure)


def connect_oauth(
    credentials: OAuthCredentials,
    installations: Installations,
    redis: Redis | None,
    on_installed: Callable[[Installation], None] | None = None,
) -> tuple[AsyncOAuthSettings, WorkspaceTokens]:
    """Bolt's OAuth settings and the token source, sharing one locked rotator."""
    rotator = LockedTokenRotator(
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        client=AsyncWebClient(base_url=credentials.api_url),
        installations=installations,
        locks=refresh_locks(redis),
    )
    tokens = WorkspaceTokens(installations, rotator, credentials.token_rotation_minutes)
    return oauth_settings(credentials, installations, rotator, on_installed), tokens


def parse_scopes(value: str) -> tuple[str, ...]:
    """A comma- or space-separated scope list."""
    return tuple(scope for scope in value.replace(",", " ").split() if scope)


class AuthorizeCache:
    """Bolt's cache of authorize results (bot token -> team), dropped for a workspace being
    forgotten (`app.workspace_data.TeamWork`)."""

    def __init__(self, authorize: object) -> None:
        self._authorize = authorize

    async def halt_team(self, team_id: str) -> None:
        if not isinstance(self._authorize, AsyncInstallationStoreAuthorize):
            return
        cache = self._authorize.authorize_result_cache
        for token in [token for token, result in cache.items() if result.team_id == team_id]:
            del cache[token]

    def resume_team(self, team_id: str) -> None:
        """Nothing to do: a new installation is authorized (and cached) afresh."""
