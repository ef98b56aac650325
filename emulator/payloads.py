"""Slack-shaped payloads: messages, the events Slack sends about them, and their envelopes."""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import time
import uuid
from typing import Any

from emulator.config import EmulatorConfig

Payload = dict[str, Any]

_ENTITY = re.compile(r"<([@#!]?)([^>|]+)(?:\|([^>]*))?>")


def mentions(text: str, user_id: str) -> bool:
    """Whether `text` contains a `<@user_id>` mention (optionally `<@user_id|name>`)."""
    return re.search(rf"<@{re.escape(user_id)}(\|[^>]*)?>", text) is not None


def rich_text_blocks(text: str) -> list[Payload]:
    """The rich_text block Slack clients attach to a typed message."""
    elements: list[Payload] = []
    position = 0
    for match in _ENTITY.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position : match.start()]})
        sigil, target, label = match.groups()
        if sigil == "@":
            elements.append({"type": "user", "user_id": target})
        elif sigil == "#":
            elements.append({"type": "channel", "channel_id": target})
        elif sigil == "!":
            elements.append({"type": "broadcast", "range": target})
        else:
            link: Payload = {"type": "link", "url": target}
            if label:
                link["text"] = label
            elements.append(link)
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    block_id = secrets.token_urlsafe(4)[:5]
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": block_id, "elements": [section]}]


def user_message(
    user_id: str, text: str, team_id: str, thread_ts: str | None, parent_user_id: str | None
) -> Payload:
    """A message typed by a human (ts is set when stored)."""
    message: Payload = {
        "type": "message",
        "user": user_id,
        "text": text,
        "team": team_id,
        "client_msg_id": str(uuid.uuid4()),
        "blocks": rich_text_blocks(text),
    }
    if thread_ts:
        message["thread_ts"] = thread_ts
        message["parent_user_id"] = parent_user_id
    return message


def bot_profile(config: EmulatorConfig) -> Payload:
    """The `bot_profile` Slack attaches to messages posted by the app."""
    return {
        "id": config.bot_id,
        "app_id": config.app_id,
        "user_id": config.bot_user_id,
        "name": config.bot_name,
        "icons": {"image_48": f"https://avatars.invalid/{config.bot_id}_48.png"},
        "deleted": False,
        "updated": int(time.time()),
        "team_id": config.team_id,
    }


def bot_message(
    config: EmulatorConfig,
    *,
    text: str,
    blocks: list[Payload] | None = None,
    attachments: list[Payload] | None = None,
    metadata: Payload | None = None,
    thread_ts: str | None = None,
    parent_user_id: str | None = None,
) -> Payload:
    """A message posted by the app through the Web API (ts is set when stored)."""
    message: Payload = {
        "type": "message",
        "user": config.bot_user_id,
        "bot_id": config.bot_id,
        "app_id": config.app_id,
        "text": text,
        "team": config.team_id,
        "bot_profile": bot_profile(config),
    }
    if blocks:
        message["blocks"] = blocks
    if attachments:
        message["attachments"] = attachments
    if metadata:
        message["metadata"] = metadata
    if thread_ts:
        message["thread_ts"] = thread_ts
        message["parent_user_id"] = parent_user_id
    return message


def message_event(message: Payload, channel_id: str, channel_type: str) -> Payload:
    """The `message` event for a new message."""
    event = copy.deepcopy(message)
    event.pop("streaming_state", None)
    event.update(channel=channel_id, event_ts=message["ts"], channel_type=channel_type)
    return event


def app_mention_event(message: Payload, channel_id: str) -> Payload:
    """The `app_mention` event for a message that mentions the bot."""
    event = copy.deepcopy(message)
    event.update(type="app_mention", channel=channel_id, event_ts=message["ts"])
    return event


def message_changed_event(
    channel_id: str, channel_type: str, new: Payload, old: Payload, event_ts: str
) -> Payload:
    """The `message_changed` event (an edit, or a finished stream)."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": copy.deepcopy(new),
        "previous_message": copy.deepcopy(old),
        "channel": channel_id,
        "hidden": True,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type,
    }


def message_deleted_event(
    channel_id: str, channel_type: str, old: Payload, event_ts: str
) -> Payload:
    """The `message_deleted` event."""
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": old["ts"],
        "channel": channel_id,
        "previous_message": copy.deepcopy(old),
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type,
    }


def event_context(config: EmulatorConfig, event: Payload) -> str:
    """An opaque `event_context` string shaped like Slack's ("4-" + base64 JSON)."""
    context = {
        "et": event.get("type"),
        "tid": config.team_id,
        "aid": config.app_id,
        "cid": event.get("channel") if isinstance(event.get("channel"), str) else None,
    }
    raw = json.dumps(context, separators=(",", ":")).encode()
    return "4-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def event_callback(
    config: EmulatorConfig, event: Payload, event_id: str, event_time: int | None = None
) -> Payload:
    """The full Events API body (`type: event_callback`) wrapping an inner event."""
    return {
        "token": config.verification_token,
        "team_id": config.team_id,
        "context_team_id": config.team_id,
        "context_enterprise_id": None,
        "api_app_id": config.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time if event_time is not None else int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": config.team_id,
                "user_id": config.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": event_context(config, event),
    }
