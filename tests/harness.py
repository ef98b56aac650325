"""Running Lore for tests: real HTTP server, real Bolt, the emulator and the fake model server."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from app.main import Lore, SlackCredentials, start_lore
from app.settings import Settings
from emulator import SlackEmulator
from memory.archive import ArchivedMessage
from tests.chroma_server import free_port
from tests.conftest import MODEL_DIR, REDIS_URL
from tests.fake_anthropic import FakeAnthropic


def lore_settings(data_dir: Path, fake: FakeAnthropic | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "lore_data_dir": data_dir,
        "lore_embedding_model_dir": MODEL_DIR,
        "anthropic_api_key": secrets.token_hex(16) if fake else None,
        "anthropic_base_url": fake.base_url if fake else None,
        "lore_model_retries": 0,
        "lore_model_timeout": 5.0,
        "port": 0,
        "lore_host": "127.0.0.1",
        "redis_url": REDIS_URL,
        "lore_reflect_tokens_per_day": 0,  # reflection only where a test turns it on
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def start_lore_on(
    emulator: SlackEmulator, settings: Settings, *, socket_mode: bool = False
) -> Lore:
    """Start Lore against `emulator`, over HTTP events or Socket Mode (where `/slack/events`
    is not served)."""
    config = emulator.config
    if settings.redis_url == REDIS_URL:
        await drop_left_intake(config.team_id)
    credentials = SlackCredentials(
        bot_token=config.bot_token,
        signing_secret=None if socket_mode else config.signing_secret,
        api_url=emulator.api_url,
        app_token=config.app_token if socket_mode else None,
    )
    if socket_mode:
        return await start_lore(settings, credentials)
    lore = await start_lore(settings)
    config.events_url = f"{lore.url}/slack/events"
    await lore.connect_slack(credentials)
    return lore


async def drop_left_intake(team_id: str) -> None:
    """Tests on the shared Redis reuse workspace ids: drop what an earlier test's Lore left in
    the intake of `team_id` (a question handed back at its stop, say; a live process's streams
    stay), so that this test's Lore does not archive or answer it."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async for stream in client.scan_iter(match=f"lore:intake:{team_id}:*"):
            owner = stream.rpartition(b":")[2]
            if not await client.exists(b"lore:lease:intake:" + owner):  # its process is gone
                await client.delete(stream)
                await client.srem("lore:intake:logs", stream[len(b"lore:intake:") :])
    finally:
        await client.aclose()


def serve_env(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, data_dir: Path, **settings: str
) -> dict[str, str]:
    """The environment of a `python -m app serve` subprocess against `emulator` and
    `fake_llm`, on a free port of 127.0.0.1 (`PORT`), with `settings` on top."""
    return {
        **os.environ,
        "PORT": str(free_port()),
        "LORE_HOST": "127.0.0.1",
        "LORE_DATA_DIR": str(data_dir),
        "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
        "REDIS_URL": REDIS_URL,
        "SLACK_BOT_TOKEN": emulator.config.bot_token,
        "SLACK_SIGNING_SECRET": emulator.config.signing_secret,
        "SLACK_API_URL": emulator.api_url,
        "ANTHROPIC_API_KEY": secrets.token_hex(16),
        "ANTHROPIC_BASE_URL": fake_llm.base_url,
        "LORE_LOG_LEVEL": "WARNING",
        "LORE_REFLECT_TOKENS_PER_DAY": "0",
        **settings,
    }


async def wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    """Wait until a Lore subprocess answers /readyz with 200 (fails if it exits first)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            assert process.returncode is None, f"Lore exited with {process.returncode}"
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} never became ready")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    """Poll an async condition until it holds (TimeoutError after `within` seconds)."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - polling a store, not an event
            await asyncio.sleep(0.05)


async def archived(lore: Lore, team_id: str, count: int) -> None:
    """Wait until the workspace's archive holds at least `count` messages."""

    async def enough() -> bool:
        return await lore.stores.archive.count(team_id) >= count

    await eventually(enough)


async def archived_message(lore: Lore, team_id: str, channel_id: str, ts: str) -> ArchivedMessage:
    """Wait until one message is in the archive and return it."""
    found: list[ArchivedMessage] = []

    async def stored() -> bool:
        message = await lore.stores.archive.get(team_id, channel_id, ts)
        found[:] = [message] if message else []
        return bool(found)

    await eventually(stored)
    return found[0]


def user_text(request: dict[str, Any]) -> str:
    """All plain text the model received in user turns of one request."""
    parts: list[str] = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content:
            if block.get("type") == "text":
                parts.append(block["text"])
    return "\n".join(parts)


def tool_result_text(request: dict[str, Any]) -> str:
    """Every tool result the model was sent in one request, as text."""
    found = []
    for message in request["messages"]:
        if isinstance(message["content"], list):
            found += [str(p["content"]) for p in message["content"] if p["type"] == "tool_result"]
    return "\n".join(found)


def system_text(request: dict[str, Any]) -> str:
    return "\n".join(block["text"] for block in request["system"])


async def settled(emulator: SlackEmulator, *lores: Lore, within: float = 60.0) -> None:
    """Wait until nothing is under way: every event delivered, and each Lore idle (every
    listener finished, no turn queued or running, no background job, nothing being archived),
    all at once. Work finished then cannot still show an effect later."""

    async def idle() -> bool:
        await emulator.drain()
        busy = [lore for lore in lores if lore.services.metrics.work_pending()]
        return not busy and emulator.delivery.pending == 0

    await eventually(idle, within)


async def metric_at(url: str, token: str, name: str) -> float:
    """One unlabelled metric of a Lore subprocess, read from its /metrics."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics", headers=headers) as response:
            assert response.status == 200, await response.text()
            body = await response.text()
    for line in body.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def work_pending_at(url: str, token: str) -> int:
    """`lore_work_pending` of a Lore subprocess, read from its /metrics."""
    return int(await metric_at(url, token, "lore_work_pending"))


async def settled_processes(
    emulator: SlackEmulator, urls: list[str], token: str, within: float = 60.0
) -> None:
    """`settled` for Lore subprocesses (their LORE_METRICS_TOKEN is `token`)."""

    async def idle() -> bool:
        await emulator.drain()
        delivered = len(emulator.deliveries)
        pending = [await work_pending_at(url, token) for url in urls]
        # no event began meanwhile: no process could turn busy after its reading
        return not any(pending) and len(emulator.deliveries) == delivered

    await eventually(idle, within)
