"""The composition root: builds the stores, services, Bolt app and web server."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

import aiohttp
import anthropic
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import handlers
from app.agent.turn import Agent, TurnLimits
from app.app_home import AppHome
from app.archive_queue import ArchiveQueue
from app.askers import Askers
from app.backfill import Backfill, BackfillLimits
from app.background import TaskPool
from app.feedback import ReplyFeedback
from app.forget_broadcast import ForgetBroadcast
from app.ingest import Ingest
from app.intake import Intake
from app.logging_setup import mask_values
from app.metrics import LoreMetrics
from app.metrics_endpoint import MetricsEndpoint
from app.oauth import (
    AuthorizeCache,
    Installations,
    OAuthCredentials,
    WorkspaceTokens,
    connect_oauth,
    parse_scopes,
)
from app.quiet_queue import QuietQueue
from app.recall import Recall
from app.reflection import Reflection, ReflectionLimits
from app.services import Services
from app.settings import Settings
from app.thread_history import ArchivedHistory, backfill_under_way
from app.thread_summaries import Summariser, SummaryLimits
from app.turns import TurnQueue
from app.web import make_web_app
from app.workspace_data import WorkspaceData
from handlers.access_facts import AccessFacts
from handlers.backfill import (
    backfill_installed,
    installed_workspaces,
    resume_backfills,
    token_workspace,
)
from handlers.early_ack import EarlyAck
from handlers.intake_replay import (
    archive_what_was_left,
    installed_clients,
    serving,
    token_clients,
)
from handlers.reflection_readers import outsiders_of
from handlers.slack_retries import retry_handlers
from memory.archive import Archive
from memory.backfill_state import BackfillState
from memory.blocks import MemoryBlocks
from memory.conversations import Conversations
from memory.db import create_tables, make_engine
from memory.dedupe import LocalOnceKeys, OnceKeys, RedisOnceKeys
from memory.early_changes import RedisEarlyChanges, SqlEarlyChanges
from memory.embeddings import load_embedder
from memory.exclusions import Exclusions
from memory.feedback import Feedback
from memory.intake import FileIntake, IntakeLog, RedisIntake
from memory.locks import (
    LocalLeases,
    LocalLocks,
    RedisConversationLocks,
    RedisLeases,
    RedisLocks,
    WorkspaceLocks,
)
from memory.note_search import NoteSearch
from memory.notes import Notes
from memory.redis_keys import RedisTeamKeys
from memory.reembed import Reembedding
from memory.reflection_state import ReflectionState
from memory.reply_sources import ReplySources
from memory.summaries import ThreadSummaries

log = logging.getLogger("lore")


class UnverifiedEvents(Exception):
    """A configuration that would serve `/slack/events` without checking Slack's signature."""


UNVERIFIED = (
    "refusing to serve /slack/events without SLACK_SIGNING_SECRET "
    "(set it, or set SLACK_APP_TOKEN for Socket Mode)"
)
REDIS_CONNECTIONS = 100
BACKGROUND_JOBS = 64  # archiving and other background jobs running at once
REDIS_CONNECTION_WAIT = 10.0


def open_redis(url: str) -> Redis:
    """A Redis client whose commands wait (up to REDIS_CONNECTION_WAIT s) for a connection when
    all REDIS_CONNECTIONS are in use, as in a burst of events, instead of failing at once (what
    redis-py's default pool does from 100 connections on)."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_CONNECTION_WAIT
    )
    return Redis.from_pool(pool)


def serves_events(
    settings: Settings, credentials: SlackCredentials | OAuthCredentials | None
) -> bool:
    """Whether `/slack/events` is served: not in Socket Mode, where Slack sends events over the
    WebSocket and an HTTP request could not be verified."""
    if credentials is not None:
        return credentials.app_token is None
    return not settings.socket_mode


@dataclass(frozen=True)
class SlackCredentials:
    bot_token: str
    signing_secret: str | None
    api_url: str
    app_token: str | None = None


@dataclass
class Stores:
    """Everything Lore remembers, opened from the settings."""

    engine: AsyncEngine
    redis: Redis | None
    archive: Archive
    blocks: MemoryBlocks
    conversations: Conversations
    once: OnceKeys
    feedback: Feedback
    installations: Installations | None
    exclusions: Exclusions
    reply_sources: ReplySources
    summaries: ThreadSummaries
    notes: Notes
    reembedding: Reembedding

    async def close(self) -> None:
        await self.reembedding.close()
        await self.archive.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


async def open_database(settings: Settings) -> AsyncEngine:
    """The durable SQL store, with its tables created."""
    settings.lore_data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database)
    await create_tables(engine)
    return engine


async def open_stores(settings: Settings) -> Stores:
    engine = await open_database(settings)
    redis = open_redis(settings.redis_url) if settings.redis_url else None
    locks: WorkspaceLocks = RedisLocks(redis) if redis else LocalLocks()
    once: OnceKeys = RedisOnceKeys(redis) if redis else LocalOnceKeys()
    embedder = await asyncio.to_thread(
        load_embedder,
        settings.lore_embedding_model_dir,
        settings.model_cache,
        threads=settings.lore_embedding_threads,
        precision=settings.lore_embedding_precision,
    )
    if settings.chroma_url:
        archive = await Archive.open_http(settings.chroma_url, embedder, engine, settings.ranking)
    else:
        archive = await Archive.open_embedded(
            settings.lore_data_dir / "chroma", embedder, engine, settings.ranking
        )
    notes = Notes(engine, embedder)
    archive.find_notes(NoteSearch(notes, embedder, settings.ranking))
    return Stores(
        engine=engine,
        redis=redis,
        archive=archive,
        blocks=MemoryBlocks(engine, locks, settings.lore_memory_block_limit),
        conversations=Conversations(engine),
        once=once,
        feedback=Feedback(engine),
        installations=await open_installations(settings, engine),
        exclusions=Exclusions(engine),
        reply_sources=ReplySources(engine),
        summaries=ThreadSummaries(engine),
        notes=notes,
        reembedding=Reembedding(
            archive, RedisLeases(redis) if redis else LocalLeases(), notes=notes
        ),
    )


async def open_intake(settings: Settings, redis: Redis | None) -> IntakeLog:
    """Where message events wait from before their ack until archived: Redis streams when
    processes share Redis, else a log file under the data dir (one process). Only `serve`
    opens it."""
    if redis is not None:
        leases = RedisLeases(redis, ttl=settings.lore_intake_lease_seconds)
        return await RedisIntake.open(redis, leases)
    return await asyncio.to_thread(FileIntake.open, settings.lore_data_dir / "intake")


async def open_installations(settings: Settings, engine: AsyncEngine) -> Installations | None:
    """The OAuth installation and state stores (OAuth mode only), with their tables created."""
    if settings.slack_client_id is None:
        return None
    installations = Installations(
        engine, settings.slack_client_id, settings.lore_oauth_state_seconds
    )
    await installations.create_tables()
    return installations


def make_llm(settings: Settings) -> anthropic.AsyncAnthropic | None:
    if settings.anthropic_api_key is None:
        return None
    return anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=settings.lore_model_retries,
        timeout=settings.lore_model_timeout,
        http_client=anthropic.DefaultAioHttpClient(),  # half httpx's CPU per streamed call
    )


def make_services(settings: Settings, stores: Stores, intake: IntakeLog) -> Services:
    llm = make_llm(settings)
    metrics = LoreMetrics()
    backfill = make_backfill(settings, stores)
    reflection = make_reflection(settings, stores, llm, backfill, metrics)
    early = RedisEarlyChanges(stores.redis) if stores.redis else SqlEarlyChanges(stores.engine)
    ingest = Ingest(
        stores.archive,
        linger=settings.lore_ingest_linger,
        max_pending=settings.lore_max_pending_archive,
        early=early,
        replies=stores.reply_sources,
        summaries=stores.summaries,
        notes=stores.notes,
        reopen_thread=reflection.reopen if reflection is not None else None,
    )
    askers = Askers(stores.conversations)
    feedback = ReplyFeedback(stores.feedback, stores.conversations)
    background = TaskPool(BACKGROUND_JOBS)
    archiving = ArchiveQueue(background, backfill, settings.lore_max_archive_backlog, metrics)
    archived_history = ArchivedHistory(
        stores.archive,
        is_excluded=stores.exclusions.is_excluded,
        settling=archiving,
        backfilling=backfill_under_way(backfill),
    )
    summariser = make_summariser(settings, stores, llm, archived_history, metrics)
    agent = Agent(
        llm=llm,
        limits=TurnLimits(
            model=settings.lore_model,
            max_steps=settings.lore_max_steps,
            max_tokens=settings.lore_max_tokens,
            history_tokens=settings.lore_history_tokens,
        ),
        archive=stores.archive,
        blocks=stores.blocks,
        conversations=stores.conversations,
        askers=askers,
        ingest=ingest,
        observer=metrics,
        is_excluded=stores.exclusions.is_excluded,
        archived_history=archived_history,
        summariser=summariser,
        notes=stores.notes,
    )
    turns = TurnQueue(
        settings.lore_max_concurrent_turns,
        max_queued=settings.lore_max_queued_turns,
        locks=RedisConversationLocks(stores.redis) if stores.redis else None,
    )
    received = Intake(intake, metrics, adopt_every=settings.lore_intake_lease_seconds / 3)
    return Services(
        agent=agent,
        turns=turns,
        ingest=ingest,
        recall=Recall(stores.archive, llm, settings.lore_model),
        background=background,
        archiving=archiving,
        once=stores.once,
        feedback=feedback,
        workspace_data=WorkspaceData(
            [
                backfill,
                stores.archive,
                stores.blocks,
                stores.conversations,
                stores.feedback,
                stores.exclusions,
                stores.reply_sources,
                stores.summaries,
                stores.notes,
                ReflectionState(stores.engine),
                *([stores.installations] if stores.installations is not None else []),
                stores.once,
                *([early] if isinstance(early, SqlEarlyChanges) else []),
                *([RedisTeamKeys(stores.redis)] if stores.redis is not None else []),
            ],
            work=[
                turns,
                backfill,
                ingest,
                archiving,
                stores.archive,
                stores.reembedding,
                stores.exclusions,
                *([summariser] if summariser is not None else []),
                *([reflection] if reflection is not None else []),
                received,
            ],
        ),
        backfill=backfill,
        deferred=QuietQueue(),
        app_home=AppHome(
            blocks=stores.blocks,
            conversations=stores.conversations,
            archive=stores.archive,
            feedback=feedback,
            backfill=backfill,
            exclusions=stores.exclusions,
            summaries=stores.summaries,
            reflection=reflection,
            notes=stores.notes,
        ),
        askers=askers,
        metrics=metrics,
        intake=received,
        summariser=summariser,
        reflection=reflection,
    )


def make_summariser(
    settings: Settings,
    stores: Stores,
    llm: anthropic.AsyncAnthropic | None,
    history: ArchivedHistory,
    metrics: LoreMetrics,
) -> Summariser | None:
    """Thread summaries with LORE_REFLECT_MODEL; none in retrieval-only mode (no model)."""
    if llm is None:
        return None
    return Summariser(
        llm,
        SummaryLimits(settings.lore_reflect_model, settings.lore_history_tokens),
        stores.summaries,
        history,
        stores.archive,
        RedisLeases(stores.redis) if stores.redis else LocalLeases(),
        metrics.thread_summarised,
        metrics.model_tokens,
    )


def make_reflection(
    settings: Settings,
    stores: Stores,
    llm: anthropic.AsyncAnthropic | None,
    backfill: Backfill,
    metrics: LoreMetrics,
) -> Reflection | None:
    """The background reflection, on the turns' model client; None in retrieval-only mode or
    with a budget of 0 tokens a day. Channels still being backfilled wait."""
    if llm is None or settings.lore_reflect_tokens_per_day == 0:
        return None

    async def backfilling(team_id: str) -> frozenset[str]:
        return frozenset(await backfill.state.unfinished(team_id))

    return Reflection(
        llm=llm,
        limits=ReflectionLimits(
            model=settings.lore_reflect_model,
            after=settings.lore_reflect_after,
            tokens_per_day=settings.lore_reflect_tokens_per_day,
        ),
        state=ReflectionState(stores.engine),
        archive=stores.archive,
        blocks=stores.blocks,
        notes=stores.notes,
        leases=RedisLeases(stores.redis) if stores.redis else LocalLeases(),
        busy=backfilling,
        observer=metrics,
    )


def make_backfill(settings: Settings, stores: Stores) -> Backfill:
    """The backfill service, paced and paged by the LORE_BACKFILL_* settings."""
    limits = BackfillLimits(
        history_per_minute=settings.lore_backfill_history_per_minute,
        replies_per_minute=settings.lore_backfill_replies_per_minute,
        page_size=settings.lore_backfill_page_size,
    )
    return Backfill(
        stores.archive,
        BackfillState(stores.engine),
        limits,
        stores.exclusions.is_excluded,
        RedisLeases(stores.redis) if stores.redis else LocalLeases(),
    )


def make_bolt(
    credentials: SlackCredentials | OAuthCredentials,
    services: Services,
    oauth: AsyncOAuthSettings | None = None,
    session: aiohttp.ClientSession | None = None,
    *,
    early_acks: bool = False,
) -> tuple[AsyncApp, AccessFacts, EarlyAck | None]:
    """The Bolt app: one bot token, or (with `oauth`) installations found per workspace; the
    access facts its listeners look up; and with `early_acks` (events over HTTP) the early path
    that answers kept message events before Bolt handles them.

    `session` keeps the Web API's connections open between calls (without one, slack-sdk opens
    a connection per call); Bolt's per-workspace clients share it too.
    """
    client = AsyncWebClient(
        token=credentials.bot_token if isinstance(credentials, SlackCredentials) else None,
        base_url=credentials.api_url,
        session=session,
        retry_handlers=retry_handlers(),
    )
    bolt = AsyncApp(
        client=client,
        # Verification stays on in every mode (Socket Mode deliveries skip it inside Bolt); with
        # no signing secret an unguessable one of this process refuses anything sent over HTTP.
        signing_secret=credentials.signing_secret or secrets.token_urlsafe(32),
        request_verification_enabled=True,
        oauth_settings=oauth,
        ignoring_self_events_enabled=False,  # handlers.own_events: deletions of Lore's own go on
    )
    early = None
    if early_acks and credentials.signing_secret:
        early = EarlyAck(
            bolt,
            services.intake,
            services.deferred,
            credentials.signing_secret,
            lambda job: services.background.spawn(job, name="event-retry"),
            services.metrics,
        )
        services.workspace_data.add_work(early)
    return bolt, handlers.register(bolt, services, early), early


@dataclass
class Lore:
    """A running Lore: its stores, services, Bolt app and web server."""

    settings: Settings
    stores: Stores
    services: Services
    runner: web.AppRunner
    port: int
    bolt: AsyncApp | None = None
    socket_mode: AsyncSocketModeHandler | None = None
    slack_session: aiohttp.ClientSession | None = None
    tokens: WorkspaceTokens | None = None
    serves_events: bool = True
    early: EarlyAck | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect_slack(self, credentials: SlackCredentials | OAuthCredentials) -> None:
        """Wire the Bolt app to Slack (or the emulator); Socket Mode when an app token is set.

        Raises `UnverifiedEvents` when `/slack/events` is served and `credentials` have no
        signing secret to verify it with.
        """
        if self.serves_events and credentials.signing_secret is None:
            raise UnverifiedEvents(UNVERIFIED)
        oauth = None
        if isinstance(credentials, OAuthCredentials):
            if self.stores.installations is None:
                raise ValueError("OAuth credentials need the installation store (SLACK_CLIENT_ID)")
            oauth, self.tokens = connect_oauth(
                credentials,
                self.stores.installations,
                self.stores.redis,
                on_installed=lambda installation: self._backfill_installed(
                    installation, credentials.api_url
                ),
            )
            self.services.workspace_data.add_work(AuthorizeCache(oauth.authorize))
            log.info("OAuth installs: a workspace admin opens %s/slack/install", self.url)
        self.slack_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.bolt, access, self.early = make_bolt(
            credentials,
            self.services,
            oauth,
            self.slack_session,
            early_acks=self.serves_events and not credentials.app_token,
        )
        if isinstance(credentials, SlackCredentials):
            readers = token_workspace(self.bolt.client)
            clients = token_clients(self.bolt.client)
        else:
            assert self.tokens is not None
            readers = installed_workspaces(self.tokens, credentials.api_url)
            clients = installed_clients(self.tokens, credentials.api_url)
        self.services.background.spawn(
            resume_backfills(readers, self.services), name="backfill-resume"
        )
        archive_what_was_left(clients, self.services, access)
        if self.services.reflection is not None:
            self.services.reflection.outsiders = outsiders_of(access, clients)
        self.stores.reembedding.start_all(serving(clients))
        if credentials.app_token:
            self.socket_mode = AsyncSocketModeHandler(self.bolt, credentials.app_token)
            await self.socket_mode.connect_async()

    def _backfill_installed(self, installation: Installation, api_url: str) -> None:
        """A new installation: read the history of every channel the bot is in."""
        if installation.team_id is None or installation.bot_token is None:
            return
        client = AsyncWebClient(token=installation.bot_token, base_url=api_url)
        self.services.background.spawn(
            backfill_installed(client, installation.team_id, self.services), name="backfill-install"
        )

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with self.stores.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = type(error).__name__
        if self.stores.redis is not None:
            try:
                await self.stores.redis.ping()
                checks["redis"] = "ok"
            except Exception as error:
                checks["redis"] = type(error).__name__
        return checks

    def hurry(self) -> None:
        """Cut `stop`'s grace short: turns still running or queued are handed back now."""
        self.services.turns.hurry()

    async def stop(self) -> None:
        """Stop taking events, finish queued work, then close the clients and stores.

        Running and queued turns get LORE_SHUTDOWN_GRACE seconds; the askers of turns left
        after that are told Lore is restarting, and those turns are cancelled.
        """
        if self.socket_mode is not None:
            await self.socket_mode.close_async()
        await self.runner.cleanup()
        await self.services.deferred.close()  # deliveries acked early go through Bolt now
        await self.stores.reembedding.close()  # it resumes at the next start
        if (broadcast := self.services.workspace_data.broadcast) is not None:
            await broadcast.close()
        if self.services.reflection is not None:
            await self.services.reflection.close()
        self.services.turns.close()
        await self.services.turns.drain(self.settings.lore_shutdown_grace)
        if self.services.summariser is not None:
            await self.services.summariser.drain(self.settings.lore_shutdown_grace)
        await self.services.backfill.close()
        await self.services.background.drain()
        await self.services.archiving.drain()
        await self.services.ingest.close()
        await self.services.intake.close()
        await self.services.agent.close()
        if self.slack_session is not None:
            await self.slack_session.close()
        await self.stores.close()


async def start_lore(
    settings: Settings, credentials: SlackCredentials | OAuthCredentials | None = None
) -> Lore:
    """Open the stores, serve HTTP on settings.port (0 = any free port) and connect to Slack.

    Without `credentials` the Bolt app is connected later with `Lore.connect_slack`, which lets
    the local emulator learn Lore's port first.
    """
    mask_values(settings.secret_values())
    events = serves_events(settings, credentials)
    if events and credentials is not None and credentials.signing_secret is None:
        raise UnverifiedEvents(UNVERIFIED)
    stores = await open_stores(settings)
    try:
        intake = await open_intake(settings, stores.redis)
    except BaseException:
        await stores.close()
        raise
    services = make_services(settings, stores, intake)
    await hear_forgetting(stores, services)
    if services.reflection is not None:
        services.reflection.start()
    metrics = metrics_endpoint(settings, stores, services)
    lore: Lore | None = None
    application = make_web_app(
        lambda: lore.bolt if lore else None,
        lambda: lore.readiness(),  # type: ignore[union-attr]
        metrics.handle,
        events=events,
        early=lambda: lore.early if lore else None,
    )
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.bind_host, settings.port)
    await site.start()
    port = runner.addresses[0][1]
    lore = Lore(
        settings=settings,
        stores=stores,
        services=services,
        runner=runner,
        port=port,
        serves_events=events,
    )
    if credentials is not None:
        await lore.connect_slack(credentials)
    return lore


async def hear_forgetting(stores: Stores, services: Services) -> None:
    """With Redis, forgetting a workspace stops its work in every process sharing it first."""
    if stores.redis is None:
        return
    data = services.workspace_data
    data.broadcast = ForgetBroadcast(stores.redis, data.halt_here, data.resume_here)
    await data.broadcast.start()


def metrics_endpoint(settings: Settings, stores: Stores, services: Services) -> MetricsEndpoint:
    """`/metrics` over this Lore's metrics, which read the queue, ingest and stores at scrape."""
    services.metrics.watch(
        turns=services.turns, ingest=services.ingest, blocks=stores.blocks, archive=stores.archive
    )
    services.metrics.watch_intake(services.intake)
    summariser = services.summariser
    reflection = services.reflection
    services.metrics.watch_notes(stores.notes)
    services.metrics.watch_reembedding(stores.reembedding)
    services.metrics.watch_work(
        lambda: reflection.pending if reflection is not None else 0,
        lambda: services.turns.unfinished,
        lambda: services.background.pending,
        lambda: services.ingest.pending + services.ingest.rechecking,
        lambda: summariser.pending if summariser is not None else 0,
        lambda: stores.reembedding.pending,
        lambda: services.deferred.pending,
    )
    token = settings.lore_metrics_token
    return MetricsEndpoint(
        services.metrics, settings.local_mode, token.get_secret_value() if token else None
    )


def oauth_credentials_from(settings: Settings) -> OAuthCredentials | None:
    """The OAuth install credentials, when SLACK_CLIENT_ID/SECRET are set."""
    if settings.slack_client_id is None or settings.slack_client_secret is None:
        return None
    return OAuthCredentials(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        scopes=parse_scopes(settings.lore_slack_scopes),
        signing_secret=(
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None
        ),
        api_url=settings.slack_api_url,
        app_token=settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
        redirect_uri=settings.slack_redirect_uri,
        state_expiration_seconds=settings.lore_oauth_state_seconds,
        token_rotation_minutes=settings.lore_token_rotation_minutes,
    )


def credentials_from(settings: Settings) -> SlackCredentials | OAuthCredentials | None:
    """Single-workspace token, OAuth installs, or None for local mode (the emulator)."""
    if settings.oauth:
        return oauth_credentials_from(settings)
    if settings.slack_bot_token is None:
        return None
    return SlackCredentials(
        bot_token=settings.slack_bot_token.get_secret_value(),
        signing_secret=(
            settings.slack_signing_secret.get_secret_value()
            if settings.slack_signing_secret
            else None
        ),
        api_url=settings.slack_api_url,
        app_token=settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
    )
