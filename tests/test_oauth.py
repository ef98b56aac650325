"""OAuth installs and token rotation: real Bolt, real slack-sdk clients, the emulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from app.main import Lore, credentials_from, open_database, start_lore
from app.settings import SettingsError, load_settings
from emulator import EmulatorConfig, SlackEmulator
from emulator.events import sign
from emulator.payloads import event_callback
from memory.backfill_state import BackfillState
from tests.conftest import POSTGRES_URL, postgres_engine_or_skip
from tests.harness import eventually, lore_settings, settled

BOT = "<@U0LORE>"
TEAM = "T0LORE"
COOKIE = "slack-app-oauth-state"


@pytest.fixture
async def rotating_emulator() -> AsyncIterator[SlackEmulator]:
    config = EmulatorConfig(
        events_url=None,
        retry_delays=(0.3, 0.3, 0.3),
        client_id=f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().int % 10**10}",
        token_rotation=True,
        token_expires_in=60,
    )
    emu = SlackEmulator(config)
    await emu.start()
    yield emu
    await emu.stop()


async def start_oauth_lore(
    emulator: SlackEmulator, data_dir: Path, *, socket_mode: bool = False, **overrides: Any
) -> Lore:
    """Lore in OAuth mode against `emulator` (HTTP events or Socket Mode), its redirect URL
    registered there."""
    config = emulator.config
    settings = lore_settings(
        data_dir,
        None,
        slack_client_id=config.client_id,
        slack_client_secret=config.client_secret,
        slack_signing_secret=None if socket_mode else config.signing_secret,
        slack_app_token=config.app_token if socket_mode else None,
        slack_api_url=emulator.api_url,
        **overrides,
    )
    lore = await start_lore(settings, credentials_from(settings))
    config.events_url = None if socket_mode else f"{lore.url}/slack/events"
    config.oauth_redirect_url = f"{lore.url}/slack/oauth_redirect"
    return lore


@pytest.fixture
async def oauth_lore(emulator: SlackEmulator, tmp_path: Path) -> AsyncIterator[Lore]:
    lore = await start_oauth_lore(emulator, tmp_path)
    yield lore
    await lore.stop()


async def begin_install(http: aiohttp.ClientSession, lore: Lore) -> tuple[str, str]:
    """GET /slack/install: the authorize URL it redirects to and the state cookie it sets."""
    response = await http.get(f"{lore.url}/slack/install", allow_redirects=False)
    assert response.status == 302
    return response.headers["Location"], response.cookies[COOKIE].value


async def authorize(http: aiohttp.ClientSession, authorize_url: str) -> str:
    """The emulator's authorize page approves: the callback URL with a code and the state."""
    response = await http.get(authorize_url, allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"]


async def callback(http: aiohttp.ClientSession, url: str, cookie: str | None) -> int:
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    response = await http.get(url, headers=headers, allow_redirects=False)
    return response.status


async def install(lore: Lore) -> None:
    """The whole browser side of an install, as an admin clicking through it."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        authorize_url, cookie = await begin_install(http, lore)
        assert await callback(http, await authorize(http, authorize_url), cookie) == 200


def installations(lore: Lore) -> Any:
    assert lore.stores.installations is not None
    return lore.stores.installations


REPLY_METHODS = frozenset({"chat.postMessage", "chat.startStream", "chat.stopStream"})


def reply_tokens(emulator: SlackEmulator) -> set[str]:
    """The tokens the bot's replies were posted with."""
    return {token for method, token in emulator.oauth.token_uses if method in REPLY_METHODS}


async def mention(emulator: SlackEmulator, text: str) -> str:
    posted = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} {text}")
    await emulator.wait_for_reply("C0GENERAL", posted["ts"], timeout=20)
    return str(posted["ts"])


async def test_install_flow_stores_the_installation_and_answers_with_its_token(
    oauth_lore: Lore, emulator: SlackEmulator
) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        authorize_url, cookie = await begin_install(http, oauth_lore)
        parts = urlsplit(authorize_url)
        query = parse_qs(parts.query)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
            f"{emulator.url}/oauth/v2/authorize"
        )
        assert query["client_id"] == [emulator.config.client_id]
        assert "chat:write" in query["scope"][0].split(",")
        assert query["state"] == [cookie]
        back = await authorize(http, authorize_url)
        assert back.startswith(f"{oauth_lore.url}/slack/oauth_redirect?")
        assert parse_qs(urlsplit(back).query)["state"] == [cookie]
        assert await callback(http, back, cookie) == 200
        assert await callback(http, back, cookie) == 401, "a state is good for one use only"

    stored = await installations(oauth_lore).find(TEAM)
    assert stored is not None and stored.bot_token is not None
    assert stored.bot_token != emulator.config.bot_token
    assert stored.bot_user_id == "U0LORE" and stored.bot_token_expires_at is None

    await mention(emulator, "hello after install")
    await mention(emulator, "and a second question")
    assert reply_tokens(emulator) == {stored.bot_token}
    assert {token for _, token in emulator.oauth.token_uses} == {stored.bot_token}
    methods = [method for method, _ in emulator.oauth.token_uses]
    # one when the install completes, one for the first event; later events use Bolt's cache
    assert methods.count("auth.test") == 2

    async def backfilled() -> bool:  # the install queued a backfill of the bot's channels
        channels = await oauth_lore.services.backfill.status(TEAM)
        return bool(channels) and all(c.status == "done" for c in channels)

    await eventually(backfilled)
    await oauth_lore.services.workspace_data.forget(TEAM)  # what uninstall does
    assert await installations(oauth_lore).find(TEAM) is None


async def test_events_authorised_at_once_share_one_auth_test(
    oauth_lore: Lore, emulator: SlackEmulator
) -> None:
    await install(oauth_lore)
    emulator.slow_method("auth.test", 0.5)  # both events are authorised while it is in flight
    events = [
        {"type": "message", "user": user, "channel": "C0GENERAL", "text": text, "ts": ts}
        for user, text, ts in (
            ("U0ALICE", "first of two at once", "1700000001.000100"),
            ("U0BOB", "second of two at once", "1700000001.000200"),
        )
    ]
    statuses = await asyncio.gather(*(emulator.deliver_event(event) for event in events))
    assert statuses == [200, 200]  # Bolt acknowledges after authorising
    methods = [method for method, _ in emulator.oauth.token_uses]
    assert methods.count("auth.test") == 2, "one when the install completes, one for both events"

    emulator.slow_method("auth.test", 0)
    await mention(emulator, "and a later question")
    stored = await installations(oauth_lore).find(TEAM)
    assert stored is not None and reply_tokens(emulator) == {stored.bot_token}
    methods = [method for method, _ in emulator.oauth.token_uses]
    assert methods.count("auth.test") == 2, "later events use Bolt's cache"


async def test_unfinished_backfills_resume_when_lore_starts_again(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    lore = await start_oauth_lore(emulator, tmp_path)
    try:
        await install(lore)
        await eventually(lambda: all_backfilled(lore))
    finally:
        await lore.stop()
    engine = await open_database(lore.settings)  # as a crash in the middle of a read leaves it
    try:
        await BackfillState(engine).restart(TEAM, "C0GENERAL")
    finally:
        await engine.dispose()

    again = await start_oauth_lore(emulator, tmp_path)
    try:
        await eventually(lambda: all_backfilled(again))
        (general,) = [
            c for c in await again.services.backfill.status(TEAM) if c.channel_id == "C0GENERAL"
        ]
        assert general.pages > 0  # restart() set it to 0: read again
    finally:
        await again.stop()


async def all_backfilled(lore: Lore) -> bool:
    channels = await lore.services.backfill.status(TEAM)
    return bool(channels) and all(c.status == "done" for c in channels)


async def test_install_and_answer_in_socket_mode(emulator: SlackEmulator, tmp_path: Path) -> None:
    lore = await start_oauth_lore(emulator, tmp_path, socket_mode=True)
    try:
        assert lore.socket_mode is not None
        await install(lore)
        stored = await installations(lore).find(TEAM)
        assert stored is not None
        await mention(emulator, "hello over Socket Mode")
        assert reply_tokens(emulator) == {stored.bot_token}
        assert emulator.socket_acks, "the event came over the socket"
    finally:
        await lore.stop()


async def test_a_forged_state_is_refused(oauth_lore: Lore, emulator: SlackEmulator) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        authorize_url, _cookie = await begin_install(http, oauth_lore)
        forged = authorize_url.replace("state=", "state=forged")
        back = await authorize(http, forged)
        forged_state = parse_qs(urlsplit(back).query)["state"][0]
        assert await callback(http, back, forged_state) == 401
        assert await callback(http, back, None) == 400, "no state cookie in this browser"
    assert await installations(oauth_lore).find(TEAM) is None
    assert emulator.oauth.token_uses == []


async def test_an_expired_state_is_refused(emulator: SlackEmulator, tmp_path: Path) -> None:
    lore = await start_oauth_lore(emulator, tmp_path, lore_oauth_state_seconds=1)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            authorize_url, cookie = await begin_install(http, lore)
            back = await authorize(http, authorize_url)
            await asyncio.sleep(1.5)
            assert await callback(http, back, cookie) == 401
        assert await installations(lore).find(TEAM) is None
    finally:
        await lore.stop()


async def test_install_on_postgres(emulator: SlackEmulator, tmp_path: Path) -> None:
    engine = await postgres_engine_or_skip()
    await engine.dispose()
    emulator.config.client_id = f"{uuid.uuid4().int % 10**10}.1"
    lore = await start_oauth_lore(emulator, tmp_path, database_url=POSTGRES_URL)
    try:
        await install(lore)
        stored = await installations(lore).find(TEAM)
        assert stored is not None
        await mention(emulator, "hello from PostgreSQL")
        assert reply_tokens(emulator) == {stored.bot_token}
        await installations(lore).delete_installation(TEAM)
        assert await installations(lore).find(TEAM) is None
    finally:
        await lore.stop()


async def test_an_expiring_token_is_refreshed_before_use(
    rotating_emulator: SlackEmulator, tmp_path: Path
) -> None:
    emulator = rotating_emulator
    lore = await start_oauth_lore(emulator, tmp_path)
    try:
        await install(lore)
        first = await installations(lore).find(TEAM)
        assert first is not None and first.bot_token.startswith("xoxe.xoxb-")
        assert first.bot_refresh_token.startswith("xoxe-")
        emulator.config.token_expires_in = 43200

        await mention(emulator, "first question after the token nearly expired")
        refreshed = await installations(lore).find(TEAM)
        assert refreshed is not None and refreshed.bot_token != first.bot_token
        assert refreshed.bot_refresh_token != first.bot_refresh_token
        assert emulator.oauth.refreshes == 1
        assert reply_tokens(emulator) == {refreshed.bot_token}

        await mention(emulator, "second question")
        assert emulator.oauth.refreshes == 1, "a fresh token is not refreshed again"
        assert reply_tokens(emulator) == {refreshed.bot_token}
    finally:
        await lore.stop()


async def test_work_outside_requests_gets_a_refreshed_token(
    rotating_emulator: SlackEmulator, tmp_path: Path
) -> None:
    emulator = rotating_emulator
    lore = await start_oauth_lore(emulator, tmp_path)
    try:
        assert lore.tokens is not None
        assert await lore.tokens.bot_token("T0NOTINSTALLED") is None
        await install(lore)
        first = await installations(lore).find(TEAM)
        assert first is not None
        emulator.config.token_expires_in = 43200
        token = await lore.tokens.bot_token(TEAM)
        assert token is not None and token != first.bot_token
        assert await lore.tokens.bot_token(TEAM) == token
        assert emulator.oauth.refreshes == 1
    finally:
        await lore.stop()


async def test_an_expired_token_is_refreshed_instead_of_failing(
    rotating_emulator: SlackEmulator, tmp_path: Path
) -> None:
    emulator = rotating_emulator
    lore = await start_oauth_lore(emulator, tmp_path)
    try:
        await install(lore)
        await settled(emulator, lore)  # the install's own work (people, backfill) is done
        first = await installations(lore).find(TEAM)
        assert first is not None
        refreshed = emulator.oauth.refreshes  # the backfill may have refreshed a 60 s token
        emulator.config.token_expires_in = 43200  # so the next token is not due again at once
        emulator.oauth.expire(first.bot_token)
        await mention(emulator, "are you still there?")
        await settled(emulator, lore)
        assert emulator.oauth.refreshes == refreshed + 1  # one refresh for both deliveries
        assert first.bot_token not in reply_tokens(emulator)
        assert len(reply_tokens(emulator)) == 1
    finally:
        await lore.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_two_processes_sharing_the_database_and_redis_refresh_once(
    rotating_emulator: SlackEmulator, tmp_path: Path, database: str
) -> None:
    emulator = rotating_emulator
    if database == "postgres":
        await (await postgres_engine_or_skip()).dispose()
        database = POSTGRES_URL
    else:
        database = f"sqlite:///{tmp_path / 'shared.db'}"
    first = await start_oauth_lore(emulator, tmp_path / "a", database_url=database)
    second = await start_oauth_lore(emulator, tmp_path / "b", database_url=database)
    try:
        await install(first)
        emulator.config.token_expires_in = 43200
        emulator.oauth.exchange_delay = 0.5
        asks = [
            await emulator.post_message(
                "U0ALICE", "C0GENERAL", f"{BOT} question {n}", deliver=False
            )
            for n in (1, 2)
        ]
        statuses = await asyncio.gather(
            *(
                post_event(emulator, lore, ask["ts"], f"question {n}")
                for n, (lore, ask) in enumerate(zip((first, second), asks, strict=True), 1)
            )
        )
        assert statuses == [200, 200]
        for ask in asks:
            await emulator.wait_for_reply("C0GENERAL", ask["ts"], timeout=20)
        assert emulator.oauth.refreshes == 1
        stored = await installations(second).find(TEAM)
        assert stored is not None
        assert reply_tokens(emulator) == {stored.bot_token}
    finally:
        await first.stop()
        await second.stop()


async def post_event(emulator: SlackEmulator, lore: Lore, ts: str, text: str) -> int:
    """POST one signed app_mention straight to one Lore process, as Slack would."""
    event = {
        "type": "app_mention",
        "user": "U0ALICE",
        "text": f"{BOT} {text}",
        "ts": ts,
        "channel": "C0GENERAL",
        "event_ts": ts,
    }
    body = json.dumps(
        event_callback(emulator.config, event, f"Ev{uuid.uuid4().hex[:12].upper()}")
    ).encode()
    headers = {"Content-Type": "application/json", **sign(emulator.config.signing_secret, body)}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{lore.url}/slack/events", data=body, headers=headers) as response,
    ):
        return response.status


async def test_delete_installation_forgets_one_workspace(
    oauth_lore: Lore, emulator: SlackEmulator
) -> None:
    await install(oauth_lore)
    store = installations(oauth_lore)
    assert await store.find(TEAM) is not None
    await store.delete_installation(TEAM)
    assert await store.find(TEAM) is None
    assert await store.store.async_find_bot(enterprise_id=None, team_id=TEAM) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"slack_client_id": "1.2"}, "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET must be set"),
        (
            {
                "slack_client_id": "1.2",
                "slack_client_secret": "s",
                "slack_bot_token": "xoxb-1",
                "slack_signing_secret": "x",
            },
            "not both",
        ),
        (
            {"slack_client_id": "1.2", "slack_client_secret": "s"},
            "SLACK_SIGNING_SECRET is required with SLACK_CLIENT_ID",
        ),
        ({"slack_redirect_uri": "https://lore.example/slack/oauth_redirect"}, "needs"),
        (
            {
                "slack_client_id": "1.2",
                "slack_client_secret": "s",
                "slack_signing_secret": "x",
                "lore_slack_scopes": " , ",
            },
            "at least one bot scope",
        ),
    ],
)
def test_inconsistent_oauth_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(_env_file=None, **values)


def test_oauth_settings_pick_oauth_mode(tmp_path: Path) -> None:
    http = load_settings(
        _env_file=None, slack_client_id="1.2", slack_client_secret="s", slack_signing_secret="x"
    )
    assert http.oauth and not http.local_mode
    socket = load_settings(
        _env_file=None,
        slack_client_id="1.2",
        slack_client_secret="top-secret",
        slack_app_token="xapp-1",
    )
    credentials = credentials_from(socket)
    assert socket.socket_mode and credentials is not None
    assert credentials.app_token == "xapp-1"
    assert "top-secret" not in repr(credentials)
