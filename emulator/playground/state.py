"""The workspace's users, channels and messages as a JSON file, so a local run keeps them.

What is kept: users (with their roles, guest flags and home organisation), conversations (with
members, topic, purpose, and the organisations they are shared with) and every message. What is not:
ephemeral messages, assistant statuses and App Home views, which Slack does not keep either.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from emulator.ids import ts_key
from emulator.workspace import Channel, User, Workspace

log = logging.getLogger(__name__)

FORMAT = 1


class StateError(Exception):
    """The state file cannot be used (unreadable, not JSON, or not ours)."""


def snapshot(workspace: Workspace) -> dict[str, Any]:
    """Everything that is kept, as JSON-ready data (message dicts are shared, not copied)."""
    return {
        "format": FORMAT,
        "team_id": workspace.team_id,
        "saved_at": time.time(),
        "users": [dataclasses.asdict(user) for user in workspace.users.values()],
        "channels": [dataclasses.asdict(channel) for channel in workspace.channels.values()],
        "messages": {
            channel_id: sorted(store.values(), key=lambda m: ts_key(m["ts"]))
            for channel_id, store in workspace.messages.items()
            if store
        },
    }


def _known_fields(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def restore(workspace: Workspace, data: dict[str, Any]) -> int:
    """Replace the workspace's users, channels and messages with `data`; messages restored.

    Must run before anything is posted (the workspace's thread index starts empty).
    """
    if data.get("format") != FORMAT:
        raise StateError(f"unknown format {data.get('format')!r}")
    if any(workspace.messages.values()):
        raise StateError("restore must run before any message is posted")
    if data.get("team_id") not in (None, workspace.team_id):
        log.warning(
            "the saved workspace is %s, this emulator plays %s; loading it anyway",
            data.get("team_id"),
            workspace.team_id,
        )
    users = [User(**_known_fields(User, raw)) for raw in data.get("users", [])]
    channels = [Channel(**_known_fields(Channel, raw)) for raw in data.get("channels", [])]
    if workspace.bot_user_id not in {user.id for user in users}:
        raise StateError("the saved workspace has no bot user")
    workspace.users.clear()
    workspace.users.update((user.id, user) for user in users)
    workspace.channels.clear()
    workspace.channels.update((channel.id, channel) for channel in channels)
    workspace.messages.clear()
    workspace.messages.update((channel.id, {}) for channel in channels)
    count = 0
    for channel_id, messages in (data.get("messages") or {}).items():
        if channel_id not in workspace.channels:
            continue
        for message in sorted(messages, key=lambda m: ts_key(m["ts"])):
            if message.get("streaming_state") == "in_progress":
                message["streaming_state"] = "completed"  # the stream ended with the last run
            workspace.add_message(channel_id, message, str(message["ts"]))
            count += 1
    return count


def load(path: Path) -> dict[str, Any] | None:
    """The saved data, or None when there is no file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(f"cannot read {path}: {error}") from error
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise StateError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise StateError(f"{path} does not hold a saved workspace")
    return data


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def write(path: Path, text: str) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def set_aside(path: Path) -> Path:
    """Rename an unusable state file out of the way (it is kept for the user to look at)."""
    aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
    os.replace(path, aside)
    return aside
