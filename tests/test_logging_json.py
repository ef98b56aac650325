"""JSON log lines: fields, exceptions, masked tokens, and the ids of a delivery and its turn."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import log_context
from app.logging_setup import JsonFormatter, TextFormatter, redact
from app.main import Lore
from app.settings import SettingsError, load_settings
from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import eventually

BOT = "<@U0LORE>"


class Captured(logging.Handler):
    """Keeps every record as the JSON line it would be written as."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("lore")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_line_holds_time_level_logger_message_and_bound_ids(captured: Captured) -> None:
    log = logging.getLogger("lore.test")
    log.info("outside any delivery")
    with log_context.bound(team="T1", event_id="Ev1"):
        with log_context.bound(channel="C1", thread_ts="1.000", event_id=None):
            log.warning("inside %s", "a turn")
    outside, inside = captured.parsed()
    assert set(outside) == {"time", "level", "logger", "message"}
    assert outside["time"].endswith("+00:00")
    assert inside == {
        "time": inside["time"],
        "level": "WARNING",
        "logger": "lore.test",
        "message": "inside a turn",
        "team": "T1",
        "event_id": "Ev1",
        "channel": "C1",
        "thread_ts": "1.000",
    }
    assert log_context.current() == {}


def test_a_text_line_shows_the_bound_ids_after_the_logger() -> None:
    record = logging.LogRecord("lore.test", logging.INFO, __file__, 1, "a turn", None, None)
    assert TextFormatter().format(record).endswith(" INFO lore.test: a turn")
    with log_context.bound(team="T1", channel="C1", thread_ts="1.000"):
        line = TextFormatter().format(record)
    assert line.endswith(" INFO lore.test [team=T1 channel=C1 thread_ts=1.000]: a turn")


def test_an_exception_is_one_field_of_one_line(captured: Captured) -> None:
    log = logging.getLogger("lore.test")
    try:
        raise ValueError("bad input")
    except ValueError:
        log.exception("could not go on")
    (line,) = captured.lines
    assert "\n" not in line
    record = json.loads(line)
    assert record["message"] == "could not go on"
    assert record["exc"].startswith("Traceback")
    assert "ValueError: bad input" in record["exc"]


def test_tokens_are_masked_in_both_formats(captured: Captured) -> None:
    secrets = "xoxb-123-456-abcDEF xapp-1-A0-xyz xoxe.xoxp-1-2-qq sk-ant-api03-secret"
    logging.getLogger("lore.test").error("token was %s", secrets)
    (record,) = captured.parsed()
    for secret in secrets.split():
        assert secret not in record["message"]
    assert record["message"].count("[redacted]") == 4
    plain = logging.LogRecord("lore", logging.INFO, __file__, 1, secrets, None, None)
    assert "abcDEF" not in TextFormatter().format(plain)
    assert redact("no secrets, just xoxo-hugs") == "no secrets, just xoxo-hugs"


def test_log_format_is_a_setting_naming_itself_when_wrong(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORE_LOG_FORMAT", "JSON")
    assert load_settings().lore_log_format == "json"
    monkeypatch.setenv("LORE_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LORE_LOG_FORMAT: must be text or json"):
        load_settings()
    monkeypatch.delenv("LORE_LOG_FORMAT")
    assert load_settings().lore_log_format == "text"


def event_ids(emulator: SlackEmulator, ts: str) -> set[str]:
    return {body["event_id"] for body in emulator.events if body["event"].get("ts") == ts}


async def test_turn_lines_carry_their_own_event_and_conversation(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic, captured: Captured
) -> None:
    release = asyncio.Event()

    async def held_reply(_request: dict[str, Any]) -> Any:
        await release.wait()
        return reply(text("Here you are."))

    fake_llm.respond_with(held_reply)
    first = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} first question")
    await fake_llm.wait_for_requests(1, timeout=20)
    second = await emulator.post_message(
        "U0BOB", "C0GENERAL", f"{BOT} second question", thread_ts=first["ts"]
    )

    async def queued_behind() -> bool:
        return lore.services.turns.depth == 2

    # the second turn waits in the worker that was started for the first event
    await eventually(queued_behind, within=20)
    release.set()
    await emulator.wait_for_reply("C0GENERAL", first["ts"], count=2, timeout=20)
    await emulator.drain()

    def turn_lines() -> list[dict[str, Any]]:
        return [r for r in captured.parsed() if r["logger"] == "lore.turn"]

    async def both_logged() -> bool:
        return len(turn_lines()) == 2

    await eventually(both_logged, within=20)
    conversation = {"team": "T0LORE", "channel": "C0GENERAL", "thread_ts": first["ts"]}
    one, two = turn_lines()
    assert one["message"].startswith("turn answered") and two["message"].startswith("turn answered")
    assert {k: one[k] for k in conversation} == conversation
    assert {k: two[k] for k in conversation} == conversation
    assert one["event_id"] in event_ids(emulator, first["ts"])
    assert two["event_id"] in event_ids(emulator, second["ts"])
    dropped = [r for r in captured.parsed() if r["logger"] == "lore.events"]
    assert {r["event_id"] for r in dropped} == (
        event_ids(emulator, first["ts"]) | event_ids(emulator, second["ts"])
    ) - {one["event_id"], two["event_id"]}
    assert all({k: r[k] for k in conversation} == conversation for r in dropped)
