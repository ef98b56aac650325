"""A message event Lore keeps is answered 200 once it is written to the intake, and Bolt handles
it right after (`handlers.early_ack`): only a delivery Slack signed, of a workspace Bolt has
authorised; a delivery Bolt then refuses (the bot's own message) leaves nothing in the intake;
one whose handling fails (Redis away) is tried again and handled once, its entry kept until
then; with the queue full, a delivery is left to Bolt before its ack."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis.asyncio as aioredis
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from app.intake import Intake
from app.main import Lore
from app.metrics import LoreMetrics
from app.quiet_queue import QuietQueue
from app.retry import Backoff
from emulator import SlackEmulator
from handlers import intake, middleware
from handlers.early_ack import EarlyAck
from memory.dedupe import LocalOnceKeys, OnceKeys, RedisOnceKeys
from memory.intake import FileIntake
from tests.harness import archived_message, eventually, settled
from tests.processes import RedisServer

SECRET = "early-ack-test-secret"
TEAM = "T0EARLY"
BOT = "U0EARLYBOT"


def message(channel: str, user: str, text: str, ts: str) -> dict[str, Any]:
    """A plain channel message event."""
    return {"type": "message", "channel": channel, "channel_type": "channel", "user": user,
            "text": text, "ts": ts}  # fmt: skip


def acked_early(lore: Lore) -> float:
    value = lore.services.metrics.registry.get_sample_value("lore_events_acked_early_total")
    return value or 0.0


async def authorised_by_bolt(emulator: SlackEmulator, lore: Lore) -> None:
    """The workspace's first message goes through Bolt before its ack, which authorises it."""
    await emulator.post_message("U0ALICE", "C0GENERAL", "the first: Bolt authorises the workspace")
    await settled(emulator, lore)


async def test_only_signed_deliveries_of_an_authorised_workspace_are_acknowledged_early(
    emulator: SlackEmulator, lore: Lore
) -> None:
    cfg = emulator.config
    await authorised_by_bolt(emulator, lore)
    before = acked_early(lore)
    now = time.time()
    forged = message("C0GENERAL", "U0MALLORY", "forged: wire the money", f"{now:.6f}")
    stale = message("C0GENERAL", "U0MALLORY", "replayed from long ago", f"{now + 1:.6f}")
    own = {**message("C0GENERAL", cfg.bot_user_id, "Lore's own reply", f"{now + 2:.6f}"),
           "bot_id": cfg.bot_id}  # fmt: skip
    control = message("C0GENERAL", "U0ALICE", "the control: a signed message", f"{now + 3:.6f}")
    delivery = emulator.delivery
    assert await delivery.deliver_once(forged, signing_secret="not-the-secret") == 401
    assert await delivery.deliver_once(stale, timestamp=int(now) - 600) == 401
    assert await delivery.deliver_once(own) == 200
    assert await delivery.deliver_once(control) == 200
    await archived_message(lore, cfg.team_id, "C0GENERAL", control["ts"])
    await settled(emulator, lore)
    assert acked_early(lore) - before == 2  # the bot's message and the control, nothing refused
    for refused in (forged, stale, own):
        assert await lore.stores.archive.get(cfg.team_id, "C0GENERAL", refused["ts"]) is None
    assert lore.services.intake.pending == 0  # the bot's message, which Bolt ignores, was let go


async def test_lore_is_idle_only_once_a_message_answered_early_is_archived(
    emulator: SlackEmulator, lore: Lore
) -> None:
    cfg = emulator.config
    await authorised_by_bolt(emulator, lore)
    for n in range(20):
        said = message("C0GENERAL", "U0ALICE", f"decision {n}", f"{time.time():.6f}")
        assert await emulator.delivery.deliver_once(said) == 200
        while lore.services.metrics.work_pending():  # noqa: ASYNC110 - every pass of the loop
            await asyncio.sleep(0)
        assert await lore.stores.archive.get(cfg.team_id, "C0GENERAL", said["ts"]) is not None


@dataclass
class Edge:
    """A Bolt app with Lore's intake and de-duplication middleware, its early path, and a
    message listener that records each delivery it handles and finishes its entry."""

    bolt: AsyncApp
    early: EarlyAck
    intake: Intake
    queue: QuietQueue
    counts: LoreMetrics
    handled: list[tuple[str, str]] = field(default_factory=list)
    """(message ts, X-Slack-Retry-Num) of each delivery the listener handled."""


async def authorize(team_id: str | None = None, **_: Any) -> AuthorizeResult:
    return AuthorizeResult(
        enterprise_id=None, team_id=team_id or TEAM, bot_user_id=BOT, bot_token="xoxb-t"
    )


PATIENT = Backoff(first=0.05, cap=0.2, attempts=100)


def edge(
    tmp_path: Path,
    once: OnceKeys,
    queue: QuietQueue,
    backoff: Backoff = PATIENT,
) -> Edge:
    bolt = AsyncApp(signing_secret=SECRET, authorize=authorize)
    log = Intake(FileIntake.open(tmp_path / "intake"), LoreMetrics(), adopt_every=0.05)
    counts = LoreMetrics()
    services = SimpleNamespace(intake=log, once=once, metrics=counts)
    tasks: set[asyncio.Task[None]] = set()

    def spawn(job: Any) -> None:
        task = asyncio.create_task(job)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    early = EarlyAck(bolt, log, queue, SECRET, spawn, counts, backoff)
    made = Edge(bolt, early, log, queue, counts)
    intake.register(bolt, services, early)  # type: ignore[arg-type]
    middleware.register(bolt, services)  # type: ignore[arg-type]

    @bolt.event("message")
    async def handle(context: AsyncBoltContext, event: dict[str, Any], request: Any) -> None:
        retry = (request.headers.get("x-slack-retry-num") or ["0"])[0]
        made.handled.append((event["ts"], retry))
        kept = intake.kept(context)
        assert kept is not None
        await log.done(kept)

    return made


def signed(ts: str, text: str, team: str = TEAM) -> tuple[str, dict[str, str]]:
    """A signed event_callback body of one message, and its headers."""
    return signed_event(message("C0GENERAL", "U0ALICE", text, ts), team)


def signed_event(event: dict[str, Any], team: str = TEAM) -> tuple[str, dict[str, str]]:
    """A signed event_callback body of `event`, and its headers."""
    ts = event.get("ts") or (event.get("message") or {}).get("ts") or event.get("deleted_ts")
    event_id = f"Ev{ts}{event.get('subtype') or ''}"
    body = json.dumps({"type": "event_callback", "team_id": team, "api_app_id": "A0EARLY",
                       "event_id": event_id.replace(".", ""), "event_time": int(time.time()),
                       "event": event})  # fmt: skip
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature}  # fmt: skip
    return body, headers


async def through_bolt_first(made: Edge, team: str = TEAM, ts: str = "1000.000001") -> None:
    """The workspace's first delivery goes through Bolt before its ack, which authorises it."""
    body, headers = signed(ts, "the first", team)
    assert not await made.early.take(body, headers)  # not authorised in this process yet
    assert made.intake.pending == 0
    response = await made.bolt.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
    assert response.status == 200
    await eventually(lambda: _true(ts in [handled for handled, _ in made.handled]))


async def _true(value: object) -> bool:
    return bool(value)


async def test_a_delivery_whose_handling_fails_after_its_ack_is_tried_again_and_handled_once(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    once = RedisOnceKeys(aioredis.Redis.from_url(redis.url))
    made = edge(tmp_path, once, QuietQueue(quiet=0.0, max_wait=0.0))
    try:
        await through_bolt_first(made)
        redis.stop()  # the de-duplication claim fails: Bolt answers the deferred dispatch 500
        body, headers = signed("1000.000002", "acked, then Redis went away")
        assert await made.early.take(body, headers)

        async def failed_once() -> bool:
            return (made.counts.registry.get_sample_value("lore_archive_retrying") or 0) == 1

        await eventually(failed_once)
        assert made.intake.pending == 1  # kept while it is not handled
        assert [ts for ts, _ in made.handled] == ["1000.000001"]
        redis.start()

        async def retried_and_done() -> bool:
            waiting = made.counts.registry.get_sample_value("lore_archive_retrying") or 0
            return waiting == 0 and made.intake.pending == 0

        await eventually(retried_and_done)
        [(ts, retry)] = made.handled[1:]
        assert ts == "1000.000002" and retry != "0"  # handled once, as Slack's retry would be
    finally:
        await made.queue.close()
        redis.stop()


async def test_a_delivery_whose_store_stays_away_through_the_retries_is_handled_later(
    tmp_path: Path,
) -> None:
    """Redis stays away through every retry of the deferred dispatch: the delivery stays in
    the intake and is handled from it once its store is back, without a restart; before,
    its handling fails and it is not finished (the control)."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    once = RedisOnceKeys(aioredis.Redis.from_url(redis.url))
    quick = Backoff(first=0.01, cap=0.02, attempts=2)
    made = edge(tmp_path, once, QuietQueue(quiet=0.0, max_wait=0.0), quick)
    replayed: list[str] = []

    async def replay(team_id: str, payload: dict[str, Any]) -> None:
        await once.claim(f"replayed:{team_id}", "probe", False)  # fails while Redis is away
        replayed.append(payload["event"]["ts"])

    async def serves(team_id: str) -> bool:
        return True

    try:
        await through_bolt_first(made)
        redis.stop()
        made.intake.keep_adopting(replay, serves)
        assert await made.early.take(*signed("1000.000002", "acked, then Redis stayed away"))

        async def gave_up() -> bool:
            return made.intake.stranded == 1

        await eventually(gave_up)
        assert made.intake.pending == 1 and replayed == []
        redis.start()
        await eventually(lambda: _true(made.intake.pending == 0))
        assert replayed == ["1000.000002"]
        assert made.intake.stranded == 0
        assert [ts for ts, _ in made.handled] == ["1000.000001"]  # not through Bolt again
    finally:
        await made.intake.close()
        await made.queue.close()
        redis.stop()


async def test_with_the_queue_full_a_delivery_is_left_to_bolt_before_its_ack(
    tmp_path: Path,
) -> None:
    made = edge(tmp_path, LocalOnceKeys(), QuietQueue(limit=1, quiet=60.0, max_wait=60.0))
    await through_bolt_first(made)
    first, first_headers = signed("1000.000002", "queued")
    second, second_headers = signed("1000.000003", "the queue is full")
    assert await made.early.take(first, first_headers)
    assert not await made.early.take(second, second_headers)
    assert made.intake.pending == 1  # only the queued one is kept; Bolt keeps the other itself
    response = await made.bolt.async_dispatch(AsyncBoltRequest(body=second, headers=second_headers))
    assert response.status == 200
    await made.queue.close()  # runs the queued delivery now
    await eventually(lambda: _true(made.intake.pending == 0))
    assert sorted(ts for ts, _ in made.handled) == ["1000.000001", "1000.000002", "1000.000003"]


async def test_a_workspace_forgotten_while_its_delivery_waits_gets_it_let_go_unhandled(
    tmp_path: Path,
) -> None:
    """A delivery answered early and waiting for Bolt when its workspace is forgotten is never
    handled (nothing it said is archived after the forgetting) and its entry is finished;
    another workspace's delivery waiting beside it is handled (the control)."""
    other = "T0EARLYOTHER"
    made = edge(tmp_path, LocalOnceKeys(), QuietQueue(quiet=60.0, max_wait=60.0))
    await through_bolt_first(made)
    await through_bolt_first(made, other, "1000.000002")
    assert await made.early.take(*signed("1000.000003", "said before the forgetting"))
    assert await made.early.take(*signed("1000.000004", "another workspace's", other))
    await made.early.halt_team(TEAM)
    said_meanwhile = signed("1000.000005", "said while it is forgotten")
    assert not await made.early.take(*said_meanwhile)  # through Bolt, which refuses or drops it
    made.early.resume_team(TEAM)
    await made.queue.close()  # runs what waits, after the forgetting
    assert sorted(ts for ts, _ in made.handled) == ["1000.000001", "1000.000002", "1000.000004"]
    assert made.intake.pending == 0  # the forgotten delivery's entry was let go too


async def test_lore_s_own_messages_are_answered_without_being_kept_but_not_their_deletion(
    tmp_path: Path,
) -> None:
    """Lore's own message and its edit are answered at the edge and written nowhere (no listener
    would see them); the deletion of one of its messages is kept and goes on to Bolt, as
    another user's message does (the control)."""
    made = edge(tmp_path, LocalOnceKeys(), QuietQueue(quiet=60.0, max_wait=60.0))
    await through_bolt_first(made)
    own = message("C0GENERAL", BOT, "Lore's answer", "1000.000002")
    edited = {"type": "message", "subtype": "message_changed", "channel": "C0GENERAL",
              "message": {**own, "text": "Lore's answer, finished"},
              "previous_message": own}  # fmt: skip
    deleted = {"type": "message", "subtype": "message_deleted", "channel": "C0GENERAL",
               "deleted_ts": own["ts"], "previous_message": own}  # fmt: skip
    assert await made.early.take(*signed_event(own))
    assert await made.early.take(*signed_event(edited))
    assert made.intake.pending == 0
    assert await made.early.take(*signed_event(deleted))
    assert made.intake.pending == 1
    assert await made.early.take(*signed("1000.000003", "the control"))
    assert made.intake.pending == 2
    await made.queue.close()
    await eventually(lambda: _true(made.intake.pending == 0))
