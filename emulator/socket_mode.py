"""Socket Mode: WebSocket tickets, the hello message, envelopes to the app and its acks."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from emulator.ids import new_envelope_id

log = logging.getLogger(__name__)


class NotConnectedError(ConnectionError):
    """No Socket Mode client is connected."""


class _Connection:
    """One WebSocket from the app, with a lock so concurrent sends don't interleave."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_str(json.dumps(message))


class SocketModeHub:
    """Plays Slack's Socket Mode server for slack_sdk's SocketModeClient (and Bolt on top)."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.acks: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def connected(self) -> bool:
        """Whether at least one client is connected."""
        return any(not c.ws.closed for c in self._connections)

    @property
    def num_connections(self) -> int:
        """How many clients are connected."""
        return sum(1 for c in self._connections if not c.ws.closed)

    def issue_url(self, ws_base_url: str) -> str:
        """A fresh `ws://…/_emulator/socket?ticket=…` URL, as apps.connections.open returns."""
        ticket = secrets.token_hex(16)
        self._tickets.add(ticket)
        return f"{ws_base_url}/_emulator/socket?ticket={ticket}&app_id={self.app_id}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler of the WebSocket endpoint."""
        if request.query.get("ticket") not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        ws = web.WebSocketResponse(autoping=True, timeout=1.0)
        await ws.prepare(request)
        connection = _Connection(ws)
        self._connections.append(connection)
        await connection.send(
            {
                "type": "hello",
                "num_connections": self.num_connections,
                "debug_info": {
                    "host": "applink-emulator",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_text(message.data)
        finally:
            self._connections.remove(connection)
        return ws

    def _on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("socket mode: ignoring non-JSON message %r", data[:200])
            return
        if not isinstance(message, dict):
            return
        self.received.append(message)
        envelope_id = message.get("envelope_id")
        if isinstance(envelope_id, str):
            self.acks.append(message)
            waiter = self._pending.get(envelope_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    async def request(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        wait_seconds: float,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool = False,
    ) -> dict[str, Any] | None:
        """Send an envelope to the newest connection; the ack, or None if none came in time."""
        live = [c for c in self._connections if not c.ws.closed]
        if not live:
            raise NotConnectedError("no Socket Mode client connected")
        envelope: dict[str, Any] = {
            "envelope_id": new_envelope_id(),
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope["envelope_id"]] = waiter
        try:
            self.sent.append(envelope)
            await live[-1].send(envelope)
            return await asyncio.wait_for(waiter, wait_seconds)
        except TimeoutError:
            return None
        finally:
            self._pending.pop(envelope["envelope_id"], None)

    async def disconnect_all(self, reason: str = "refresh_requested") -> None:
        """Ask every client to reconnect, as Slack does before recycling a connection."""
        for connection in list(self._connections):
            if not connection.ws.closed:
                await connection.send(
                    {
                        "type": "disconnect",
                        "reason": reason,
                        "debug_info": {"host": "applink-emulator"},
                    }
                )

    async def close(self) -> None:
        """Close every connection (the emulator is stopping)."""
        for connection in list(self._connections):
            await connection.ws.close(code=1001, message=b"emulator stopping")
