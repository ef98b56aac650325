"""What every Web API handler shares: its context, errors and argument parsing."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from emulator.config import EmulatorConfig
from emulator.notifier import Notifier
from emulator.workspace import Channel, EmulatorError, Workspace

Args = dict[str, Any]
T = TypeVar("T")


class ApiError(Exception):
    """A Web API error answer: `{"ok": false, "error": error, **extra}`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class ApiContext:
    """What a handler may use: config, state, event notifications and the server's URLs."""

    config: EmulatorConfig
    workspace: Workspace
    notifier: Notifier
    base_url: Callable[[], str]
    socket_url: Callable[[], str]


Handler = Callable[[ApiContext, Args], dict[str, Any]]


def text_arg(args: Args, name: str, *, required: bool = False) -> str | None:
    """A string argument; missing and required → `invalid_arguments`."""
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise ApiError("invalid_arguments", detail=f"missing required argument: {name}")
        return None
    return value if isinstance(value, str) else json.dumps(value)


def json_arg(args: Args, name: str, error: str = "invalid_arguments") -> Any:
    """An argument that is JSON: given as a structure (JSON body) or a JSON string (form)."""
    value = args.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(error, detail=f"{name} is not valid JSON") from None
    return value


def bool_arg(args: Args, name: str, default: bool = False) -> bool:
    """A boolean argument (true/false/1/0 in forms)."""
    value = args.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes")


def int_arg(args: Args, name: str, default: int) -> int:
    """An integer argument."""
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError("invalid_arguments", detail=f"{name} must be an integer") from None


def channel_arg(ctx: ApiContext, args: Args, name: str = "channel") -> Channel:
    """The channel named by an argument (id, name or user id), or `channel_not_found`."""
    ref = text_arg(args, name)
    if ref is None:
        raise ApiError("channel_not_found")
    try:
        return ctx.workspace.resolve_channel(ref)
    except EmulatorError as error:
        raise ApiError(error.error) from None


def encode_cursor(offset: int) -> str:
    """An opaque cursor (base64, as Slack's look)."""
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """The offset inside a cursor; `invalid_cursor` if it is not one of ours."""
    if not cursor:
        return 0
    try:
        kind, _, offset = base64.b64decode(cursor, validate=True).decode().partition(":")
        if kind != "offset":
            raise ValueError(cursor)
        return int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError("invalid_cursor") from None


def paginate(items: Sequence[T], args: Args, default_limit: int) -> tuple[list[T], str]:
    """One page of `items` per `cursor`/`limit`, and the next cursor ("" on the last page)."""
    limit = max(1, min(int_arg(args, "limit", default_limit) or default_limit, 1000))
    offset = decode_cursor(text_arg(args, "cursor"))
    page = list(items[offset : offset + limit])
    more = offset + limit < len(items)
    return page, encode_cursor(offset + limit) if more else ""
