"""views.publish (the App Home), views.open and views.update (modals opened on a trigger, kept
until submitted or closed).

A trigger id is good once and for 3 seconds, as on Slack. Each open modal is stored in
`workspace.modals` with the user it was opened for (`emulator.view_interactions` submits it).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from emulator.api.base import ApiContext, ApiError, Args, Handler, json_arg, text_arg
from emulator.api.limits import check_view
from emulator.ids import new_view_id, trigger_age

TRIGGER_SECONDS = 3.0


def view_object(ctx: ApiContext, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
    """The view object Slack returns and sends back in interactions (state starts empty)."""
    return {
        "id": view_id,
        "team_id": ctx.config.team_id,
        "type": view["type"],
        "blocks": view.get("blocks", []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": hashlib.sha256(repr(view).encode()).hexdigest()[:16] + f".{int(time.time())}",
        "title": view.get("title"),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "close": view.get("close"),
        "submit": view.get("submit"),
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": ctx.config.app_id,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": ctx.config.team_id,
        "bot_id": ctx.config.bot_id,
    }


def _modal_arg(args: Args) -> dict[str, Any]:
    view = json_arg(args, "view")
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise ApiError("invalid_arguments", detail="view must be an object of type modal")
    if not isinstance(view.get("title"), dict) or not isinstance(view.get("blocks"), list):
        raise ApiError("invalid_arguments", detail="a modal needs a title and blocks")
    if any(b.get("type") == "input" for b in view["blocks"]) and not view.get("submit"):
        raise ApiError("invalid_arguments", detail="must define submit to use an input block")
    check_view(view)
    return view


def views_open(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """views.open: exchange a fresh trigger id for a modal shown to the user who caused it."""
    trigger_id = text_arg(args, "trigger_id")
    if trigger_id is None:
        raise ApiError("invalid_arguments", detail="missing required argument: trigger_id")
    age = trigger_age(trigger_id)
    if age is None:
        raise ApiError("invalid_trigger_id")
    if trigger_id in ctx.workspace.exchanged_triggers:
        raise ApiError("exchanged_trigger_id")
    if age > TRIGGER_SECONDS:
        raise ApiError("expired_trigger_id")
    view = _modal_arg(args)
    ctx.workspace.exchanged_triggers.add(trigger_id)
    opened = view_object(ctx, new_view_id(), view)
    ctx.workspace.modals[opened["id"]] = {
        "trigger_id": trigger_id,
        "user": ctx.workspace.trigger_users.get(trigger_id),
        "view": opened,
        "opened_at": time.time(),
    }
    return {"ok": True, "view": opened}


def views_update(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """views.update: replace an open modal (by view_id or external_id)."""
    view_id = text_arg(args, "view_id")
    external_id = text_arg(args, "external_id")
    found = ctx.workspace.modals.get(view_id or "")
    if found is None and external_id:
        found = next(
            (m for m in ctx.workspace.modals.values() if m["view"]["external_id"] == external_id),
            None,
        )
    if found is None:
        raise ApiError("not_found")
    updated = view_object(ctx, found["view"]["id"], _modal_arg(args))
    found["view"] = updated
    return {"ok": True, "view": updated}


def views_publish(ctx: ApiContext, args: Args) -> dict[str, Any]:
    """views.publish: the user's App Home view (see emu.views)."""
    user_id = text_arg(args, "user_id")
    if user_id is None or user_id not in ctx.workspace.users:
        raise ApiError("user_not_found")
    view = json_arg(args, "view", "invalid_arguments")
    if not isinstance(view, dict) or view.get("type") != "home":
        raise ApiError("invalid_arguments", detail="view must be an object of type home")
    check_view(view)
    previous = ctx.workspace.views.get(user_id)
    published = view_object(ctx, previous["id"] if previous else new_view_id(), view)
    ctx.workspace.views[user_id] = published
    return {"ok": True, "view": published}


METHODS: dict[str, Handler] = {
    "views.publish": views_publish,
    "views.open": views_open,
    "views.update": views_update,
}
