"""Secrets never reach the logs: every secret setting and every token OAuth hands out is masked,
raw and URL-encoded, in text and JSON lines, at DEBUG (slack-sdk's and the Anthropic SDK's
request logs included)."""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import aiohttp
import pytest

from app.api import enable_api
from app.logging_setup import JsonFormatter, TextFormatter, mask_values, redact
from emulator import EmulatorConfig, SlackEmulator
from tests.conftest import new_team
from tests.fake_anthropic import FakeAnthropic, error
from tests.test_oauth import install, installations, start_oauth_lore

BOT = "<@U0LORE>"


class WholeLog(logging.Handler):
    """Every record, written as a text line and as a JSON line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = TextFormatter()
        self.json = JsonFormatter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.text.format(record))
        self.lines.append(self.json.format(record))

    @property
    def whole(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def whole_log() -> Iterator[WholeLog]:
    handler = WholeLog()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def rotating_emulator() -> AsyncIterator[SlackEmulator]:
    config = EmulatorConfig(
        events_url=None,
        retry_delays=(0.3, 0.3, 0.3),
        team_id=new_team(),
        client_id=f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().int % 10**10}",
        token_rotation=True,
        token_expires_in=60,
    )
    emu = SlackEmulator(config)
    await emu.start()
    yield emu
    await emu.stop()


def written_forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), quote_plus(value), quote(value)}


async def test_a_debug_log_through_install_rotation_and_a_failing_model_holds_no_secret(
    rotating_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path, whole_log: WholeLog
) -> None:
    emulator = rotating_emulator
    team = emulator.config.team_id
    admin_token = secrets.token_urlsafe(32)
    metrics_token = secrets.token_urlsafe(32)
    model_key = "key/" + secrets.token_urlsafe(24) + "+=&"  # changes when URL-encoded
    lore = await start_oauth_lore(
        emulator,
        tmp_path,
        anthropic_api_key=model_key,
        anthropic_base_url=fake_llm.base_url,
        lore_admin_token=admin_token,
        lore_metrics_token=metrics_token,
    )
    try:
        enable_api(lore)
        await install(lore)
        first = await installations(lore).find(team)
        assert first is not None and first.bot_refresh_token is not None
        emulator.config.token_expires_in = 43200

        fake_llm.script(error(500, "api_error", "the model is down"))
        asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} who owns deploys?")
        await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
        assert emulator.oauth.refreshes == 1 and len(fake_llm.requests) == 1
        async with aiohttp.ClientSession() as http:
            bearer = {"Authorization": f"Bearer {admin_token}"}
            async with http.get(f"{lore.url}/api/teams/{team}/memory", headers=bearer) as r:
                assert r.status == 200
            scrape = {"Authorization": f"Bearer {metrics_token}"}
            async with http.get(f"{lore.url}/metrics", headers=scrape) as r:
                assert r.status == 200
        # A token URL-encoded in a line (e.g. a form body or query string) is masked too.
        logging.getLogger("lore.test").debug(
            "form body token=%s&refresh=%s",
            quote(first.bot_token or "", safe=""),
            quote(first.bot_refresh_token, safe=""),
        )
    finally:
        await lore.stop()

    log = whole_log.whole
    assert "oauth.v2.access" in log and "Sending a request" in log, "the DEBUG bodies were logged"
    assert "Request options" in log, "the Anthropic SDK's DEBUG request log was captured"
    assert "[redacted]" in log
    config = emulator.config
    secret_values = {
        "signing secret": config.signing_secret,
        "client secret": config.client_secret,
        "admin token": admin_token,
        "metrics token": metrics_token,
        "Anthropic key": model_key,
        **{f"issued token {n}": token for n, token in enumerate(emulator.oauth.issued)},
    }
    assert len(emulator.oauth.issued) == 4  # install and refresh: access + refresh token each
    for name, value in secret_values.items():
        for form in written_forms(value):
            assert form not in log, f"the {name} is in the log as {form!r}"


def test_values_are_masked_raw_url_and_json_encoded_in_both_formats() -> None:
    secret = "sig/" + secrets.token_hex(8) + '+"q'
    mask_values([secret])
    record = logging.LogRecord(
        "lore.test",
        logging.DEBUG,
        __file__,
        1,
        "raw %s url %s plus %s json %s",
        (secret, quote(secret, safe=""), quote_plus(secret), json.dumps({"s": secret})),
        None,
    )
    for line in (TextFormatter().format(record), JsonFormatter().format(record)):
        for form in (*written_forms(secret), json.dumps(secret)[1:-1]):
            assert form not in line
        assert line.count("[redacted]") >= 4


def test_token_shapes_are_masked_after_a_url_encoded_character() -> None:
    bot = "xoxb-" + secrets.token_hex(8)
    rotated = "xoxe.xoxb-1-" + secrets.token_hex(6)
    line = redact(f"token%3D{bot}&x=%22{rotated}%22 token={bot}")
    assert bot[5:] not in line and rotated[12:] not in line
    assert line.count("xoxb-[redacted]") == 3 and "xoxe.xoxb-[redacted]" in line
