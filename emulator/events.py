"""Events API delivery: signing, HTTP POSTs to the app, Socket Mode routing and Slack's retries."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.signature import SignatureVerifier

from emulator.config import EmulatorConfig
from emulator.ids import new_event_id
from emulator.payloads import event_callback
from emulator.socket_mode import NotConnectedError, SocketModeHub

log = logging.getLogger(__name__)

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


@dataclass
class Attempt:
    """One try at delivering an event."""

    retry_num: int
    via: str
    ok: bool
    status: int | None = None
    reason: str = ""
    response: str = ""
    no_retry: bool = False


@dataclass
class DeliveryRecord:
    """The life of one event_callback body: its attempts and how it ended."""

    event_id: str
    body: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    delivered: bool = False
    dropped: bool = False
    done: bool = False

    @property
    def event_type(self) -> str:
        """The inner event's type (message, app_mention, …)."""
        return str(self.body.get("event", {}).get("type", ""))


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request-signing headers for `body`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature or ""}


class EventDelivery:
    """Delivers events to the app in the background, retrying failures as Slack does."""

    def __init__(self, config: EmulatorConfig, socket: SocketModeHub) -> None:
        self.config = config
        self.socket = socket
        self.records: list[DeliveryRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client session."""
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Cancel pending deliveries and close the session."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open client session (start() first)."""
        if self._session is None:
            raise RuntimeError("the emulator is not started")
        return self._session

    @property
    def pending(self) -> int:
        """How many deliveries are still under way."""
        return len(self._tasks)

    def enqueue(self, event: dict[str, Any]) -> DeliveryRecord:
        """Wrap an inner event in an envelope and deliver it in the background."""
        event_id = new_event_id()
        record = DeliveryRecord(event_id, event_callback(self.config, event, event_id))
        self.records.append(record)
        self.spawn(self._deliver(record))
        return record

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in the background; drain() waits for it."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every pending delivery (including ones started meanwhile) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver(self, record: DeliveryRecord) -> None:
        body = json.dumps(record.body).encode()
        reason = ""
        try:
            for retry_num in range(len(self.config.retry_delays) + 1):
                if retry_num:
                    await asyncio.sleep(self.config.retry_delays[retry_num - 1])
                attempt = await self._attempt(record, body, retry_num, reason)
                if attempt is None:
                    record.dropped = True
                    log.info("event %s dropped: no events_url and no socket", record.event_id)
                    break
                record.attempts.append(attempt)
                if attempt.ok:
                    record.delivered = True
                    break
                if attempt.no_retry:
                    break
                reason = attempt.reason
        except Exception:
            log.exception("delivery of event %s failed", record.event_id)
        finally:
            record.done = True

    async def _attempt(
        self, record: DeliveryRecord, body: bytes, retry_num: int, reason: str
    ) -> Attempt | None:
        if self.socket.connected:
            try:
                ack = await self.socket.request(
                    "events_api",
                    record.body,
                    wait_seconds=self.config.ack_timeout,
                    retry_attempt=retry_num,
                    retry_reason=reason,
                )
            except (NotConnectedError, ConnectionError):
                return Attempt(retry_num, "socket", ok=False, reason="connection_failed")
            if ack is None:
                return Attempt(retry_num, "socket", ok=False, reason="timeout")
            return Attempt(retry_num, "socket", ok=True, response=json.dumps(ack))
        if self.config.events_url is None:
            return None
        headers = {"Content-Type": "application/json"}
        if retry_num:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = reason
        return await self._http_attempt(body, headers, retry_num)

    async def _http_attempt(self, body: bytes, headers: dict[str, str], retry_num: int) -> Attempt:
        try:
            status, text, response_headers = await self.post(
                body, headers, wait_seconds=self.config.ack_timeout
            )
        except TimeoutError:
            return Attempt(retry_num, "http", ok=False, reason="http_timeout")
        except aiohttp.ClientConnectionError as error:
            return Attempt(
                retry_num, "http", ok=False, reason="connection_failed", response=str(error)
            )
        except aiohttp.ClientError as error:
            return Attempt(retry_num, "http", ok=False, reason="unknown_error", response=str(error))
        ok = 200 <= status < 300
        return Attempt(
            retry_num,
            "http",
            ok=ok,
            status=status,
            reason="" if ok else "http_error",
            response=text,
            no_retry=response_headers.get("x-slack-no-retry") == "1",
        )

    async def post(
        self,
        body: bytes,
        headers: dict[str, str],
        *,
        wait_seconds: float,
        signing_secret: str | None = None,
        timestamp: int | None = None,
        signed: bool = True,
    ) -> tuple[int, str, dict[str, str]]:
        """POST `body` to events_url (signed unless told not to).

        Returns the status, the text and the response headers (names in lower case).
        """
        if self.config.events_url is None:
            raise RuntimeError("no events_url configured")
        all_headers = {"User-Agent": USER_AGENT, **headers}
        if signed:
            all_headers.update(sign(signing_secret or self.config.signing_secret, body, timestamp))
        async with self.session.post(
            self.config.events_url,
            data=body,
            headers=all_headers,
            timeout=aiohttp.ClientTimeout(total=wait_seconds),
            allow_redirects=False,
        ) as response:
            text = await response.text()
            return response.status, text, {k.lower(): v for k, v in response.headers.items()}

    async def deliver_once(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        signing_secret: str | None = None,
        timestamp: int | None = None,
        wait_seconds: float = 30.0,
    ) -> int:
        """POST one signed event_callback for `event` to events_url; the HTTP status."""
        event = dict(event)
        event.setdefault("event_ts", event.get("ts") or f"{time.time():.6f}")
        body = event_callback(self.config, event, event_id or new_event_id())
        headers = {"Content-Type": "application/json"}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        status, _, _ = await self.post(
            json.dumps(body).encode(),
            headers,
            wait_seconds=wait_seconds,
            signing_secret=signing_secret,
            timestamp=timestamp,
        )
        return status
