"""auth, users, team, views, apps.connections and assistant.threads methods."""

from __future__ import annotations

import time
from typing import Any

from emulator.api.base import (
    ApiContext,
    ApiError,
    Args,
    Handler,
    channel_arg,
    paginate,
    text_arg,
)


def auth_test(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """auth.test for the bot token."""
    config = ctx.config
    return {
        "ok": True,
        "url": f"{ctx.base_url()}/",
        "team": config.team_name,
        "user": config.bot_name,
        "team_id": config.team_id,
        "user_id": config.bot_user_id,
        "bot_id": config.bot_id,
        "is_enterprise_install": False,
    }


def users_info(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """users.info"""
    user = ctx.workspace.users.get(text_arg(args, "user") or "")
    if user is None:
        raise ApiError("user_not_found")
    return {"ok": True, "user": user.to_api(ctx.config.team_id)}


def users_list(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """users.list: the workspace's own people (guests, bots and deactivated accounts included),
    `limit` (at most 1000) a page. As in Slack, members of another organisation met in a shared
    channel are not listed; users.info answers for them."""
    team_id = ctx.config.team_id
    users = [u.to_api(team_id) for u in ctx.workspace.users.values() if not u.home_team_id]
    page, next_cursor = paginate(users, args, 1000)
    return {
        "ok": True,
        "members": page,
        "cache_ts": int(time.time()),
        "response_metadata": {"next_cursor": next_cursor},
    }


def team_info(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """team.info"""
    config = ctx.config
    return {
        "ok": True,
        "team": {
            "id": config.team_id,
            "name": config.team_name,
            "url": f"{ctx.base_url()}/",
            "domain": config.team_domain,
            "email_domain": "example.com",
            "icon": {"image_default": True},
            "avatar_base_url": "https://avatars.invalid/",
            "is_verified": False,
        },
    }


def apps_connections_open(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """apps.connections.open (app-level token): a WebSocket URL on this emulator."""
    return {"ok": True, "url": ctx.socket_url()}


def _assistant_thread(ctx: ApiContext, args: Args) -> tuple[str, str]:
    channel = channel_arg(ctx, args, "channel_id")
    thread_ts = text_arg(args, "thread_ts")
    if thread_ts is None:
        raise ApiError("invalid_thread_ts")
    return channel.id, ctx.workspace.thread_root(channel.id, thread_ts)


def set_status(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """assistant.threads.setStatus: "" clears; a bot reply in the thread clears it too."""
    key = _assistant_thread(ctx, args)
    if "status" not in args:
        raise ApiError("invalid_arguments", detail="missing required argument: status")
    status = str(args["status"] or "")
    if status:
        ctx.workspace.statuses[key] = status
    else:
        ctx.workspace.statuses.pop(key, None)
    return {"ok": True}


def set_title(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """assistant.threads.setTitle (accepted, not shown anywhere)."""
    _assistant_thread(ctx, args)
    return {"ok": True}


def set_suggested_prompts(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """assistant.threads.setSuggestedPrompts (accepted, not shown anywhere)."""
    channel_arg(ctx, args, "channel_id")
    return {"ok": True}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "users.list": users_list,
    "team.info": team_info,
    "apps.connections.open": apps_connections_open,
    "assistant.threads.setStatus": set_status,
    "assistant.threads.setTitle": set_title,
    "assistant.threads.setSuggestedPrompts": set_suggested_prompts,
}
