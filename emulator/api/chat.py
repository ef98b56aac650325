"""chat.* methods: posting, editing, deleting, permalinks, ephemerals and streaming."""

from __future__ import annotations

import copy
from typing import Any

from emulator import payloads
from emulator.api.base import (
    ApiContext,
    ApiError,
    Args,
    Handler,
    bool_arg,
    channel_arg,
    json_arg,
    text_arg,
)
from emulator.api.limits import check_message_blocks, check_message_text, check_stream_text
from emulator.workspace import Channel, EmulatorError, Message

IN_PROGRESS = "in_progress"
COMPLETED = "completed"


def _message(ctx: ApiContext, channel: Channel, ts: str | None) -> Message:
    if ts is None:
        raise ApiError("message_not_found")
    try:
        return ctx.workspace.get_message(channel.id, ts)
    except EmulatorError as error:
        raise ApiError(error.error) from None


def _own_message(ctx: ApiContext, channel: Channel, ts: str | None, error: str) -> Message:
    message = _message(ctx, channel, ts)
    if not ctx.workspace.is_from_bot(message):
        raise ApiError(error)
    return message


def _require_membership(ctx: ApiContext, channel: Channel) -> None:
    if ctx.config.bot_user_id not in channel.members:
        raise ApiError("not_in_channel")
    if channel.is_archived:
        raise ApiError("is_archived")


def _chunk_text(args: Args) -> str:
    """markdown_text plus the text of any markdown_text chunks."""
    text = text_arg(args, "markdown_text") or ""
    for chunk in json_arg(args, "chunks") or []:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            text += str(chunk.get("text", ""))
    return text


def _post_bot_message(
    ctx: ApiContext,
    channel: Channel,
    thread_ts: str | None,
    *,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    attachments: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    streaming: bool = False,
    broadcast: bool = False,
) -> Message:
    """Store a bot message (a reply clears the thread's assistant status) and notify the app."""
    workspace = ctx.workspace
    parent_user = None
    if thread_ts:
        thread_ts = workspace.thread_root(channel.id, thread_ts)
        parent = workspace.messages.get(channel.id, {}).get(thread_ts)
        parent_user = parent.get("user") if parent else None
        workspace.statuses.pop((channel.id, thread_ts), None)
    message = payloads.bot_message(
        ctx.config,
        text=text,
        blocks=blocks,
        attachments=attachments,
        metadata=metadata,
        thread_ts=thread_ts,
        parent_user_id=parent_user,
    )
    if streaming:
        message["streaming_state"] = IN_PROGRESS
    if broadcast and thread_ts:
        message["subtype"] = "thread_broadcast"
    workspace.add_message(channel.id, message)
    ctx.notifier.message_posted(channel.id, message)
    return message


def post_message(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.postMessage"""
    channel = channel_arg(ctx, args)
    _require_membership(ctx, channel)
    text = text_arg(args, "text") or text_arg(args, "markdown_text")
    blocks = json_arg(args, "blocks", "invalid_blocks_format")
    attachments = json_arg(args, "attachments")
    if not text and not blocks and not attachments:
        raise ApiError("no_text")
    check_message_text(text)
    check_message_blocks(blocks)
    message = _post_bot_message(
        ctx,
        channel,
        text_arg(args, "thread_ts"),
        text=text or "",
        blocks=blocks,
        attachments=attachments,
        metadata=json_arg(args, "metadata", "invalid_metadata_format"),
        broadcast=bool_arg(args, "reply_broadcast"),
    )
    rendered = ctx.workspace.render(channel.id, message)
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": rendered}


def update(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.update (also ends a stream still in progress on that message)."""
    channel = channel_arg(ctx, args)
    message = _own_message(ctx, channel, text_arg(args, "ts"), "cant_update_message")
    previous = copy.deepcopy(message)
    text = text_arg(args, "text") or text_arg(args, "markdown_text")
    blocks = json_arg(args, "blocks", "invalid_blocks_format")
    attachments = json_arg(args, "attachments")
    metadata = json_arg(args, "metadata", "invalid_metadata_format")
    if text is None and blocks is None and attachments is None:
        raise ApiError("no_text")
    check_message_text(text)
    check_message_blocks(blocks)
    if text is not None:
        message["text"] = text
    for key, value in (("blocks", blocks), ("attachments", attachments), ("metadata", metadata)):
        if value is not None:
            message[key] = value
    if message.get("streaming_state") == IN_PROGRESS:
        message["streaming_state"] = COMPLETED
    message["edited"] = {"user": ctx.config.bot_user_id, "ts": ctx.workspace.clock.next()}
    ctx.notifier.message_changed(channel.id, message, previous)
    rendered = ctx.workspace.render(channel.id, message)
    return {
        "ok": True,
        "channel": channel.id,
        "ts": message["ts"],
        "text": message.get("text", ""),
        "message": rendered,
    }


def delete(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.delete"""
    channel = channel_arg(ctx, args)
    message = _own_message(ctx, channel, text_arg(args, "ts"), "cant_delete_message")
    ctx.workspace.remove_message(channel.id, message["ts"])
    ctx.notifier.message_deleted(channel.id, message)
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def get_permalink(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.getPermalink"""
    channel = channel_arg(ctx, args)
    message = _message(ctx, channel, text_arg(args, "message_ts"))
    link = ctx.workspace.permalink(ctx.base_url(), channel.id, message["ts"])
    return {"ok": True, "channel": channel.id, "permalink": link}


def post_ephemeral(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.postEphemeral: kept apart from the channel's messages (see emu.ephemerals)."""
    channel = channel_arg(ctx, args)
    _require_membership(ctx, channel)
    user = text_arg(args, "user")
    if user is None or user not in ctx.workspace.users:
        raise ApiError("user_not_found")
    if user not in channel.members:
        raise ApiError("user_not_in_channel")
    text = text_arg(args, "text") or text_arg(args, "markdown_text")
    blocks = json_arg(args, "blocks", "invalid_blocks_format")
    attachments = json_arg(args, "attachments")
    if not text and not blocks and not attachments:
        raise ApiError("no_text")
    check_message_text(text)
    check_message_blocks(blocks)
    ts = ctx.workspace.clock.next()
    ctx.workspace.ephemerals.append(
        {
            "channel": channel.id,
            "user": user,
            "text": text or "",
            "blocks": blocks,
            "attachments": attachments,
            "thread_ts": text_arg(args, "thread_ts"),
            "ts": ts,
        }
    )
    return {"ok": True, "message_ts": ts}


def start_stream(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.startStream: a bot reply in the thread whose text grows with appendStream."""
    channel = channel_arg(ctx, args)
    _require_membership(ctx, channel)
    thread_ts = text_arg(args, "thread_ts", required=True)
    if not channel.is_im:
        if not text_arg(args, "recipient_team_id"):
            raise ApiError("missing_recipient_team_id")
        if not text_arg(args, "recipient_user_id"):
            raise ApiError("missing_recipient_user_id")
    text = _chunk_text(args)
    check_stream_text(text)
    message = _post_bot_message(ctx, channel, thread_ts, text=text, streaming=True)
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def _streaming(ctx: ApiContext, args: Args) -> tuple[Channel, Message]:
    channel = channel_arg(ctx, args)
    message = _message(ctx, channel, text_arg(args, "ts"))
    if message.get("streaming_state") != IN_PROGRESS:
        raise ApiError("message_not_in_streaming_state")
    return channel, message


def append_stream(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.appendStream"""
    channel, message = _streaming(ctx, args)
    addition = _chunk_text(args)
    if not addition and not json_arg(args, "chunks"):
        raise ApiError("no_text")
    check_stream_text(addition, str(message.get("text", "")))
    message["text"] = str(message.get("text", "")) + addition
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def stop_stream(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """chat.stopStream: the last text, blocks and metadata; the message is final."""
    channel, message = _streaming(ctx, args)
    previous = copy.deepcopy(message)
    addition = _chunk_text(args)
    blocks = json_arg(args, "blocks", "invalid_blocks_format")
    check_stream_text(addition, str(message.get("text", "")))
    check_message_blocks(blocks)
    message["text"] = str(message.get("text", "")) + addition
    metadata = json_arg(args, "metadata", "invalid_metadata_format")
    if blocks is not None:
        message["blocks"] = blocks
    if metadata is not None:
        message["metadata"] = metadata
    message["streaming_state"] = COMPLETED
    ctx.notifier.message_changed(channel.id, message, previous)
    rendered = ctx.workspace.render(channel.id, message)
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": rendered}


METHODS: dict[str, Handler] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.getPermalink": get_permalink,
    "chat.postEphemeral": post_ephemeral,
    "chat.startStream": start_stream,
    "chat.appendStream": append_stream,
    "chat.stopStream": stop_stream,
}
