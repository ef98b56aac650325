"""Slash commands: the signed request to the app, and what it sends back to response_url."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from emulator import payloads
from emulator.api.limits import LimitError, check_message_blocks, check_message_text
from emulator.config import EmulatorConfig
from emulator.events import EventDelivery
from emulator.ids import new_trigger_id
from emulator.interactions import post_interaction
from emulator.notifier import Notifier
from emulator.socket_mode import SocketModeHub
from emulator.workspace import EmulatorError, Workspace


def _parse_response(text: str) -> dict[str, Any] | None:
    """The app's immediate answer to a command: JSON, plain text, or nothing."""
    if not text.strip():
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return {"text": text}
    return body if isinstance(body, dict) else {"text": text}


class SlashCommands:
    """Sends slash commands to the app and collects its answers in `responses`."""

    def __init__(
        self,
        config: EmulatorConfig,
        workspace: Workspace,
        delivery: EventDelivery,
        socket: SocketModeHub,
        notifier: Notifier,
        base_url: Callable[[], str],
    ) -> None:
        self.config = config
        self.workspace = workspace
        self.delivery = delivery
        self.socket = socket
        self.notifier = notifier
        self.base_url = base_url
        self.responses: list[dict[str, Any]] = []
        self._issued: dict[str, dict[str, str]] = {}
        self.limit_refusals: list[dict[str, Any]] = []
        """Shared with the Web API's: answers refused for breaking Slack's size limits."""

    def payload(self, user_id: str, channel_id: str, command: str, text: str) -> dict[str, str]:
        """The form fields Slack sends for a slash command (with a fresh response_url)."""
        user = self.workspace.user(user_id)
        channel = self.workspace.channel(channel_id)
        command_id = secrets.token_hex(8)
        fields = {
            "token": self.config.verification_token,
            "team_id": self.config.team_id,
            "team_domain": self.config.team_domain,
            "channel_id": channel.id,
            "channel_name": "directmessage" if channel.is_im else channel.name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command if command.startswith("/") else "/" + command,
            "text": text,
            "api_app_id": self.config.app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url()}/_emulator/response_url/{command_id}",
            "trigger_id": new_trigger_id(),
        }
        self._issued[command_id] = fields
        return fields

    async def send(
        self, user_id: str, channel_id: str, command: str, text: str = ""
    ) -> dict[str, Any]:
        """Invoke a command as `user_id` in `channel_id`; the app's acknowledgement."""
        fields = self.payload(user_id, channel_id, command, text)
        command_id = fields["response_url"].rsplit("/", 1)[-1]
        status: int | None
        answer: dict[str, Any] | None
        if self.socket.connected:
            ack = await self.socket.request(
                "slash_commands",
                dict(fields),
                wait_seconds=self.config.ack_timeout,
                accepts_response_payload=True,
            )
            status = 200 if ack is not None else None
            answer = ack.get("payload") if ack else None
        elif self.config.events_url is not None:
            try:
                status, body, _ = await self.delivery.post(
                    urlencode(fields).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"},
                    wait_seconds=self.config.ack_timeout,
                )
            except (TimeoutError, aiohttp.ClientError):
                status, body = None, ""
            answer = _parse_response(body) if status == 200 else None
        else:
            raise EmulatorError("not_connected", "no events_url and no Socket Mode client")
        if answer:
            self._record(command_id, "ack", answer)
        return {
            "ok": status is not None and 200 <= status < 300,
            "status": status,
            "error": None if status is not None else "operation_timeout",
            "response": answer,
            "response_url": fields["response_url"],
            "trigger_id": fields["trigger_id"],
        }

    async def press_button(
        self, user_id: str, response_url: str, action_id: str, value: str
    ) -> int | None:
        """`user_id` clicks a button of an answer sent to `response_url` (a block_actions POST)."""
        command_id = response_url.rsplit("/", 1)[-1]
        fields = self._issued[command_id]
        payload = {
            "type": "block_actions",
            "token": self.config.verification_token,
            "api_app_id": self.config.app_id,
            "team": {"id": self.config.team_id, "domain": self.config.team_domain},
            "user": {"id": user_id, "team_id": self.config.team_id},
            "channel": {"id": fields["channel_id"]},
            "container": {"type": "message", "is_ephemeral": True},
            "trigger_id": new_trigger_id(),
            "response_url": response_url,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "recall",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        status, _ = await post_interaction(self.config, self.delivery, payload)
        return status

    def respond(self, command_id: str, body: dict[str, Any]) -> None:
        """Take a POST to a response_url; `in_channel` answers become channel messages."""
        if command_id not in self._issued:
            raise EmulatorError("expired_url", command_id)
        try:
            check_message_text(body.get("text"))
            check_message_blocks(body.get("blocks"))
        except LimitError as error:
            refusal = {"method": "response_url", "error": error.error, "messages": error.messages}
            self.limit_refusals.append(refusal)
            raise EmulatorError(error.error, "; ".join(error.messages)) from None
        self._record(command_id, "response_url", body)

    def _record(self, command_id: str, via: str, body: dict[str, Any]) -> None:
        fields = self._issued[command_id]
        response_type = body.get("response_type") or "ephemeral"
        self.responses.append(
            {
                "command_id": command_id,
                "command": fields["command"],
                "channel": fields["channel_id"],
                "user": fields["user_id"],
                "via": via,
                "response_type": response_type,
                "text": body.get("text", ""),
                "blocks": body.get("blocks"),
                "body": body,
            }
        )
        if response_type == "in_channel":
            message = payloads.bot_message(
                self.config, text=str(body.get("text", "")), blocks=body.get("blocks")
            )
            self.workspace.add_message(fields["channel_id"], message)
            self.notifier.message_posted(fields["channel_id"], message)
