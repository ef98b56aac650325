"""conversations.* methods (info, history, replies, members, list, join, open) and
users.conversations."""

from __future__ import annotations

from typing import Any

from emulator.api.base import (
    ApiContext,
    ApiError,
    Args,
    Handler,
    bool_arg,
    channel_arg,
    decode_cursor,
    encode_cursor,
    int_arg,
    paginate,
    text_arg,
)
from emulator.ids import ts_key
from emulator.workspace import Channel, Message


def _readable(ctx: ApiContext, channel: Channel) -> None:
    """The bot reads a conversation only from inside it, as with a bot token in Slack."""
    if ctx.config.bot_user_id in channel.members:
        return
    raise ApiError("channel_not_found" if channel.is_private else "not_in_channel")


def _in_window(message: Message, args: Args) -> bool:
    """Whether a message is within oldest/latest (exclusive unless `inclusive`)."""
    inclusive = bool_arg(args, "inclusive")
    key = ts_key(message["ts"])
    oldest = text_arg(args, "oldest")
    latest = text_arg(args, "latest")
    if oldest and (key < ts_key(oldest) or (key == ts_key(oldest) and not inclusive)):
        return False
    return not (latest and (key > ts_key(latest) or (key == ts_key(latest) and not inclusive)))


def _page_response(key: str, items: list[Any], next_cursor: str) -> dict[str, Any]:
    return {
        "ok": True,
        key: items,
        "has_more": bool(next_cursor),
        "response_metadata": {"next_cursor": next_cursor},
    }


def info(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.info"""
    channel = channel_arg(ctx, args)
    if channel.is_private and ctx.config.bot_user_id not in channel.members:
        raise ApiError("channel_not_found")
    rendered = channel.to_api(ctx.config.team_id, ctx.config.bot_user_id)
    if not bool_arg(args, "include_num_members"):
        rendered.pop("num_members", None)
    return {"ok": True, "channel": rendered}


def replies(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.replies: like Slack, every page starts with the thread's parent."""
    channel = channel_arg(ctx, args)
    _readable(ctx, channel)
    ts = text_arg(args, "ts")
    if ts is None:
        raise ApiError("thread_not_found")
    workspace = ctx.workspace
    thread = workspace.thread(channel.id, workspace.thread_root(channel.id, ts))
    if not thread:
        raise ApiError("thread_not_found")
    parent, rest = thread[0], [m for m in thread[1:] if _in_window(m, args)]
    per_page = max(1, int_arg(args, "limit", 1000) - 1)
    offset = decode_cursor(text_arg(args, "cursor"))
    page = rest[offset : offset + per_page]
    next_cursor = encode_cursor(offset + per_page) if offset + per_page < len(rest) else ""
    metadata = bool_arg(args, "include_all_metadata")
    messages = [workspace.render(channel.id, m, metadata=metadata) for m in [parent, *page]]
    return _page_response("messages", messages, next_cursor)


def history(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.history: top-level messages, newest first."""
    channel = channel_arg(ctx, args)
    _readable(ctx, channel)
    shown = [m for m in reversed(ctx.workspace.top_level(channel.id)) if _in_window(m, args)]
    page, next_cursor = paginate(shown, args, 100)
    metadata = bool_arg(args, "include_all_metadata")
    messages = [ctx.workspace.render(channel.id, m, metadata=metadata) for m in page]
    response = _page_response("messages", messages, next_cursor)
    response.update(pin_count=0, channel_actions_ts=None, channel_actions_count=0)
    return response


def members(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.members"""
    channel = channel_arg(ctx, args)
    _readable(ctx, channel)
    page, next_cursor = paginate(channel.members, args, 100)
    return {"ok": True, "members": page, "response_metadata": {"next_cursor": next_cursor}}


def _listed(ctx: ApiContext, channel: Channel, types: set[str], exclude_archived: bool) -> bool:
    if exclude_archived and channel.is_archived:
        return False
    member = ctx.config.bot_user_id in channel.members
    if channel.is_im:
        return "im" in types and member
    if channel.is_mpim:
        return "mpim" in types and member
    if channel.is_private:
        return "private_channel" in types and member
    return "public_channel" in types


def list_(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.list"""
    types = {t.strip() for t in (text_arg(args, "types") or "public_channel").split(",")}
    unknown = types - {"public_channel", "private_channel", "mpim", "im"}
    if unknown:
        raise ApiError("invalid_types", detail=", ".join(sorted(unknown)))
    exclude_archived = bool_arg(args, "exclude_archived")
    channels = [
        c.to_api(ctx.config.team_id, ctx.config.bot_user_id)
        for c in ctx.workspace.channels.values()
        if _listed(ctx, c, types, exclude_archived)
    ]
    page, next_cursor = paginate(channels, args, 100)
    return {"ok": True, "channels": page, "response_metadata": {"next_cursor": next_cursor}}


def users_conversations(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """users.conversations: a user's conversations that this bot token may see.

    As in Slack, a bot token sees a user's private channels, DMs and group DMs only where the
    bot is a member too; public channels are listed when the user is a member.
    """
    user = text_arg(args, "user") or ctx.config.bot_user_id
    if user not in ctx.workspace.users and user != ctx.config.bot_user_id:
        raise ApiError("user_not_found")
    types = {t.strip() for t in (text_arg(args, "types") or "public_channel").split(",")}
    unknown = types - {"public_channel", "private_channel", "mpim", "im"}
    if unknown:
        raise ApiError("invalid_types", detail=", ".join(sorted(unknown)))
    exclude_archived = bool_arg(args, "exclude_archived")
    channels = [
        c.to_api(ctx.config.team_id, ctx.config.bot_user_id)
        for c in ctx.workspace.channels.values()
        if user in c.members and _listed(ctx, c, types, exclude_archived)
    ]
    page, next_cursor = paginate(channels, args, 100)
    return {"ok": True, "channels": page, "response_metadata": {"next_cursor": next_cursor}}


def join(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.join (public channels only, as in Slack)."""
    channel = channel_arg(ctx, args)
    if channel.is_private:
        raise ApiError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise ApiError("is_archived")
    response: dict[str, Any] = {"ok": True}
    if ctx.config.bot_user_id in channel.members:
        response["warning"] = "already_in_channel"
        response["response_metadata"] = {"warnings": ["already_in_channel"]}
    else:
        channel.members.append(ctx.config.bot_user_id)
    response["channel"] = channel.to_api(ctx.config.team_id, ctx.config.bot_user_id)
    return response


def open_(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """conversations.open for a DM with one user (or an existing conversation via `channel`)."""
    if text_arg(args, "channel"):
        channel = channel_arg(ctx, args)
    else:
        users = [u.strip() for u in (text_arg(args, "users") or "").split(",") if u.strip()]
        if len(users) != 1:
            raise ApiError("invalid_arguments", detail="the emulator opens DMs with one user")
        if users[0] not in ctx.workspace.users:
            raise ApiError("user_not_found")
        channel = ctx.workspace.dm_with(users[0])
    rendered: dict[str, Any] = {"id": channel.id}
    if bool_arg(args, "return_im"):
        rendered = channel.to_api(ctx.config.team_id, ctx.config.bot_user_id)
    return {"ok": True, "no_op": True, "already_open": True, "channel": rendered}


METHODS: dict[str, Handler] = {
    "conversations.info": info,
    "conversations.replies": replies,
    "conversations.history": history,
    "conversations.members": members,
    "conversations.list": list_,
    "conversations.join": join,
    "conversations.open": open_,
    "users.conversations": users_conversations,
}
