"""A delivery's claim stays pending until it is handed on: Slack's retry of an attempt that
failed after its claim was stored takes the claim over; duplicates and twins still lose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from slack_bolt.request.async_request import AsyncBoltRequest

from handlers.middleware import failed_before
from memory.dedupe import LocalOnceKeys, OnceKeys, RedisOnceKeys
from tests.conftest import new_team
from tests.processes import RedisServer


@pytest.fixture(params=["redis", "local"])
async def once(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OnceKeys]:
    if request.param == "local":
        yield LocalOnceKeys()
        return
    server = RedisServer(tmp_path / "redis")
    server.start()
    redis = Redis.from_url(server.url)
    try:
        yield RedisOnceKeys(redis)
    finally:
        await redis.aclose()
        server.stop()


async def test_a_retry_takes_over_a_claim_its_failed_attempt_left_pending(once: OnceKeys) -> None:
    key = f"event:{new_team()}:Ev1"
    assert await once.claim(key, "Ev1")  # stored, but the attempt failed before it was handed on
    assert not await once.claim(key, "Ev1")  # the same delivery again, not a retry, loses
    assert await once.claim(key, "Ev1", retry=True)
    await once.settle(key)
    assert not await once.claim(key, "Ev1", retry=True)  # once handed on, a retry loses


async def test_a_retry_never_takes_over_the_pending_claim_of_its_twin(once: OnceKeys) -> None:
    key = f"message:{new_team()}:C1:1700000000.000001"
    assert await once.claim(key, "EvMessage")
    assert not await once.claim(key, "EvMention", retry=True)
    assert not await once.claim(key, "", retry=True)  # a delivery without an id never does
    assert await once.claim(key, "EvMessage", retry=True)  # the failed delivery's own retry


async def test_a_retry_of_a_delivery_handed_on_is_a_duplicate(once: OnceKeys) -> None:
    key = f"message:{new_team()}:C1:1700000000.000001"
    assert await once.claim(key, "Ev2")
    await once.settle(key)
    assert not await once.claim(key, "Ev2", retry=True)
    other = f"message:{new_team()}:C1:1700000000.000002"
    assert await once.claim(other, "Ev3", retry=True)  # a retry of a delivery never claimed wins


@pytest.mark.parametrize(
    ("number", "reason", "failed"),
    [
        ("1", "http_error", True),
        ("2", "connection_failed", True),
        ("0", "", False),
        ("1", "http_timeout", False),
        ("1", "timeout", False),
    ],
)
def test_only_a_retry_after_a_failed_attempt_may_take_a_claim_over(
    number: str, reason: str, failed: bool
) -> None:
    headers = {"X-Slack-Retry-Num": number, "X-Slack-Retry-Reason": reason}
    assert failed_before(AsyncBoltRequest(body="{}", headers=headers)) is failed
    assert failed_before(AsyncBoltRequest(body="{}", headers={})) is False
