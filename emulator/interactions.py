"""Buttons in channel messages: a human presses one and the app gets a `block_actions` payload."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

from emulator.config import EmulatorConfig
from emulator.events import EventDelivery
from emulator.ids import new_trigger_id
from emulator.socket_mode import NotConnectedError, SocketModeHub
from emulator.workspace import EmulatorError, Workspace

Payload = dict[str, Any]


def find_action(message: Payload, action_id: str, value: str) -> tuple[str, Payload]:
    """The block id and the action Slack reports for pressing `action_id` with `value`.

    Plain buttons and both halves of `feedback_buttons` are found; anything else is refused.
    """
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if not isinstance(element, dict) or element.get("action_id") != action_id:
                continue
            action: Payload = {"type": element.get("type"), "action_id": action_id}
            if element.get("type") == "feedback_buttons":
                for half in ("positive_button", "negative_button"):
                    button = element.get(half) or {}
                    if button.get("value") == value:
                        action.update(value=value, text=button.get("text"))
                        return str(block.get("block_id") or "emulated"), action
            elif element.get("value", "") == value:
                action.update(value=value, text=element.get("text"))
                return str(block.get("block_id") or "emulated"), action
    raise EmulatorError("no_such_button", f"{action_id}={value}")


def block_actions_payload(
    config: EmulatorConfig,
    workspace: Workspace,
    user_id: str,
    channel_id: str,
    message: Payload,
    block_id: str,
    action: Payload,
) -> Payload:
    """The interaction payload Slack sends when a button in a (non-ephemeral) message is pressed."""
    user = workspace.user(user_id)
    channel = workspace.channel(channel_id)
    container: Payload = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel.id,
        "is_ephemeral": False,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions",
        "token": config.verification_token,
        "api_app_id": config.app_id,
        "team": {"id": config.team_id, "domain": config.team_domain},
        "user": {"id": user.id, "username": user.name, "team_id": config.team_id},
        "channel": {"id": channel.id, "name": "directmessage" if channel.is_im else channel.name},
        "container": container,
        "message": message,
        "trigger_id": new_trigger_id(),
        "actions": [{**action, "block_id": block_id, "action_ts": f"{time.time():.6f}"}],
    }


class MessageButtons:
    """Presses buttons of messages in channels, over HTTP or Socket Mode."""

    def __init__(
        self,
        config: EmulatorConfig,
        workspace: Workspace,
        delivery: EventDelivery,
        socket: SocketModeHub,
    ) -> None:
        self.config = config
        self.workspace = workspace
        self.delivery = delivery
        self.socket = socket

    async def press(
        self, user_id: str, channel_id: str, ts: str, action_id: str, value: str
    ) -> int | None:
        """`user_id` presses the button `action_id`/`value` of message `ts`; the app's status.

        None when the app did not answer in time.
        """
        message = self.workspace.render(channel_id, self.workspace.get_message(channel_id, ts))
        block_id, action = find_action(message, action_id, value)
        payload = block_actions_payload(
            self.config, self.workspace, user_id, channel_id, message, block_id, action
        )
        status, _ = await deliver_interaction(self.config, self.delivery, self.socket, payload)
        return status


async def post_interaction(
    config: EmulatorConfig, delivery: EventDelivery, payload: Payload
) -> tuple[int | None, str]:
    """POST an interaction payload to the app's request URL, form-encoded as Slack does; the
    app's status and body (None and "" when it did not answer in time)."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    try:
        status, text, _ = await delivery.post(
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
            wait_seconds=config.ack_timeout,
        )
    except (TimeoutError, aiohttp.ClientError):
        return None, ""
    return status, text


async def deliver_interaction(
    config: EmulatorConfig, delivery: EventDelivery, socket: SocketModeHub, payload: Payload
) -> tuple[int | None, Payload | None]:
    """Send an interaction over Socket Mode when the app is connected, else over HTTP; the
    app's status and its JSON answer, if any (None, None when it did not answer in time)."""
    if socket.connected:
        try:
            ack = await socket.request(
                "interactive",
                payload,
                wait_seconds=config.ack_timeout,
                accepts_response_payload=True,
            )
        except NotConnectedError:
            return None, None
        return (200, ack.get("payload")) if ack is not None else (None, None)
    status, text = await post_interaction(config, delivery, payload)
    try:
        answer = json.loads(text) if text.strip() else None
    except ValueError:
        answer = None
    return status, answer if isinstance(answer, dict) else None
