"""No unverified request reaches Lore in any mode: Socket Mode serves no `/slack/events`, local
mode listens on loopback and verifies with a secret of its own, and a configuration that would
serve `/slack/events` unverified does not start."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from app.local import start_local_slack
from app.main import Lore, SlackCredentials, UnverifiedEvents, start_lore
from emulator import EmulatorConfig, SlackEmulator
from tests.chroma_server import free_port
from tests.conftest import ROOT, new_team
from tests.harness import archived, eventually, lore_settings, start_lore_on


class ResponseUrl:
    """An HTTP endpoint standing in for an attacker's `response_url`: it records every POST."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def record(request: web.Request) -> web.Response:
            self.received.append(await request.read())
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/{tail:.*}", record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def response_url() -> AsyncIterator[ResponseUrl]:
    endpoint = ResponseUrl()
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


def signed(secret: str, body: bytes, content_type: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
            timestamp=stamp, body=body
        ),
    }


def forged_recall(team_id: str, response_url: str) -> bytes:
    """`/recall` as someone else, its answer to be posted to `response_url`."""
    return urlencode(
        {
            "command": "/recall",
            "text": "payments on-call",
            "team_id": team_id,
            "user_id": "U0BOB",
            "channel_id": "C0GENERAL",
            "response_url": response_url,
            "trigger_id": "1.2.forged",
        }
    ).encode()


def forged_uninstall(team_id: str) -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": team_id,
            "event_id": "EvFORGEDUNINSTALL",
            "event_time": int(time.time()),
            "event": {"type": "app_uninstalled"},
        }
    ).encode()


async def post_forgeries(url: str, team_id: str, hook: str) -> list[int]:
    """Unsigned and wrongly signed `/recall` and `app_uninstalled`; the statuses answered."""
    form = "application/x-www-form-urlencoded"
    wrong = secrets.token_hex(16)
    recall, uninstall = forged_recall(team_id, hook), forged_uninstall(team_id)
    requests: list[tuple[bytes, dict[str, str]]] = [
        (recall, {"Content-Type": form}),
        (recall, signed(wrong, recall, form)),
        (uninstall, {"Content-Type": "application/json"}),
        (uninstall, signed(wrong, uninstall, "application/json")),
    ]
    statuses = []
    async with aiohttp.ClientSession() as session:
        for body, headers in requests:
            async with session.post(url, data=body, headers=headers) as response:
                statuses.append(response.status)
    return statuses


async def test_socket_mode_serves_no_slack_events_and_forgeries_do_nothing(
    team_emulator: SlackEmulator, response_url: ResponseUrl, tmp_path: Path
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    lore = await start_lore_on(emulator, lore_settings(tmp_path, None), socket_mode=True)
    try:
        await emulator.wait_for(lambda: emulator.socket.connected, timeout=10)
        said = await emulator.post_message("U0CAROL", "C0GENERAL", "Falcon owns payments on-call.")
        await archived(lore, team, 1)
        await lore.services.background.drain()
        calls_before = len(emulator.calls)

        statuses = await post_forgeries(f"{lore.url}/slack/events", team, response_url.url)
        assert statuses == [404, 404, 404, 404]
        calls_after_forgeries = len(emulator.calls)

        # Control: the same /recall over the socket (verified by Slack's connection) is answered.
        ack = await emulator.send_command("U0ALICE", "C0GENERAL", "/recall", "payments on-call")
        assert ack["ok"]

        async def answered() -> bool:
            return any(
                r["via"] == "response_url" and said["permalink"] in json.dumps(r)
                for r in emulator.command_responses
            )

        await eventually(answered)
        assert calls_after_forgeries == calls_before, emulator.calls[calls_before:]
        assert response_url.received == []
        assert await lore.stores.archive.count(team) == 1
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{lore.url}/healthz") as health:
                assert health.status == 200
    finally:
        await lore.stop()


async def test_http_mode_refuses_forgeries_while_socket_mode_has_no_route(
    lore: Lore, emulator: SlackEmulator, response_url: ResponseUrl
) -> None:
    """In HTTP mode the route exists and Bolt refuses the same forgeries with 401."""
    statuses = await post_forgeries(f"{lore.url}/slack/events", "T0LORE", response_url.url)
    assert statuses == [401, 401, 401, 401]
    ack = await emulator.send_command("U0ALICE", "C0GENERAL", "/recall", "   ")
    assert ack["ok"] and "Usage" in ack["response"]["text"]
    assert response_url.received == []


async def test_serving_slack_events_without_a_signing_secret_does_not_start(
    emulator: SlackEmulator, tmp_path: Path
) -> None:
    unsigned = SlackCredentials(
        bot_token=emulator.config.bot_token, signing_secret=None, api_url=emulator.api_url
    )
    with pytest.raises(UnverifiedEvents, match="SLACK_SIGNING_SECRET"):
        await start_lore(lore_settings(tmp_path / "a", None), unsigned)
    lore = await start_lore(lore_settings(tmp_path / "b", None))
    try:
        with pytest.raises(UnverifiedEvents, match="without SLACK_SIGNING_SECRET"):
            await lore.connect_slack(unsigned)
        assert lore.bolt is None
    finally:
        await lore.stop()


async def test_serve_refuses_a_bot_token_without_a_signing_secret(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *_python_app(),
        "serve",
        env=_env(tmp_path, SLACK_BOT_TOKEN="xoxb-1-" + secrets.token_hex(8)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "SLACK_SIGNING_SECRET" in lines[0], lines


def _python_app() -> list[str]:
    return [sys.executable, "-m", "app"]


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LORE_"))}
    return {**env, "PYTHONPATH": str(ROOT), "LORE_DATA_DIR": str(tmp_path), **values}


def non_loopback_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_local_mode_listens_on_loopback_and_verifies_with_its_own_secret(
    tmp_path: Path,
) -> None:
    settings = lore_settings(
        tmp_path, None, lore_host=None, lore_emulator_port=free_port(), redis_url=None
    )
    assert settings.local_mode and settings.bind_host == "127.0.0.1"
    lore = await start_lore(settings)
    emulator = await start_local_slack(lore)
    try:
        assert lore.runner.addresses[0][0] == "127.0.0.1"
        if (address := non_loopback_address()) is not None:
            with pytest.raises(OSError):
                socket.create_connection((address, lore.port), timeout=2).close()
        secret = emulator.config.signing_secret
        assert len(secret) >= 32 and secret != EmulatorConfig().signing_secret

        team = emulator.config.team_id
        forged = _message_event(team, "Ev" + secrets.token_hex(4), "Forged fact.")
        body = json.dumps(forged).encode()
        async with aiohttp.ClientSession() as session:
            for other in (secrets.token_hex(32), EmulatorConfig().signing_secret):
                headers = signed(other, body, "application/json")
                async with session.post(
                    f"{lore.url}/slack/events", data=body, headers=headers
                ) as r:
                    assert r.status == 401
        # Control: the emulator's own delivery, signed with the secret of this run, is taken.
        posted = await emulator.post_message("U0ALICE", "C0GENERAL", "The real fact: Falcon.")
        message = await _archived(lore, team, posted["ts"])
        assert message["text"] == "The real fact: Falcon."
        await lore.services.background.drain()
        assert await lore.stores.archive.get(team, "C0GENERAL", forged["event"]["ts"]) is None
    finally:
        await lore.stop()
        await emulator.stop()


def _message_event(team: str, event_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": team,
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "message",
            "channel": "C0GENERAL",
            "channel_type": "channel",
            "user": "U0ALICE",
            "text": text,
            "ts": f"{int(time.time())}.000777",
        },
    }


async def _archived(lore: Lore, team: str, ts: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def stored() -> bool:
        message = await lore.stores.archive.get(team, "C0GENERAL", ts)
        if message is not None:
            found["text"] = message.text
        return bool(found)

    await eventually(stored, within=60)
    return found


async def test_the_standalone_emulator_prints_a_secret_it_made() -> None:
    made = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "emulator",
            "--port",
            str(free_port()),
            "--no-demo",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            for _ in range(20):
                line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
                if "signing secret" in line:
                    made.append(line.split("signing secret", 1)[1].strip())
                    break
        finally:
            process.terminate()
            await process.wait()
    assert len(made) == 2 and made[0] != made[1] and all(len(s) == 32 for s in made)


async def test_emulator_control_api_takes_json_from_this_machine_and_its_own_page() -> None:
    emulator = SlackEmulator(EmulatorConfig(events_url=None, team_id=new_team()))
    await emulator.start()
    try:
        url = f"{emulator.url}/_emulator/messages"
        body = json.dumps({"user": "U0ALICE", "channel": "C0GENERAL", "text": "hello"})
        port = emulator.url.rsplit(":", 1)[1]
        before = emulator.messages("C0GENERAL")
        async with aiohttp.ClientSession() as session:
            as_text = {"Content-Type": "text/plain"}
            async with session.post(url, data=body, headers=as_text) as response:
                assert response.status == 415
            as_form = {"Content-Type": "application/x-www-form-urlencoded"}
            async with session.post(url, data=body, headers=as_form) as response:
                assert response.status == 415
            foreign = {"Content-Type": "application/json", "Origin": "http://evil.example"}
            async with session.post(url, data=body, headers=foreign) as response:
                assert response.status == 403
            async with session.get(
                f"{emulator.url}/_emulator/channels", headers={"Origin": "http://evil.example"}
            ) as response:
                assert response.status == 403
            rebound = {"Content-Type": "application/json", "Host": f"evil.example:{port}"}
            async with session.post(url, data=body, headers=rebound) as response:
                assert response.status == 403
            async with session.get(
                f"{emulator.url}/_emulator/channels", headers={"Host": f"evil.example:{port}"}
            ) as response:
                assert response.status == 403
            assert emulator.messages("C0GENERAL") == before

            # Control: JSON from this machine, and from the emulator's own page, is taken.
            own = {"Content-Type": "application/json", "Origin": f"http://localhost:{port}"}
            async with session.post(url, data=body, headers=own) as response:
                assert response.status == 200
            json_only = {"Content-Type": "application/json"}
            async with session.post(url, data=body, headers=json_only) as response:
                assert response.status == 200
        added = emulator.messages("C0GENERAL")[len(before) :]
        assert [m["text"] for m in added] == ["hello", "hello"]
    finally:
        await emulator.stop()
