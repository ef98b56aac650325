"""Control endpoints (`/_emulator/…`) for people with curl and for other processes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.workspace import EmulatorError

if TYPE_CHECKING:
    from emulator.server import SlackEmulator

HINT = (
    "Slack emulator (open {url}/ in a browser for the playground). "
    "Post as a user: curl {url}/_emulator/messages -H 'content-type: application/json' -d "
    '\'{{"user":"U0ALICE","channel":"C0GENERAL","text":"<@{bot}> hello"}}\' ; '
    "read the thread: curl {url}/_emulator/threads/C0GENERAL/<ts> ; "
    "also GET /_emulator/channels, /_emulator/users, /_emulator/calls, "
    "POST /_emulator/commands, /_emulator/actions, /_emulator/users (someone joins), "
    "/_emulator/users/<id> (made a guest or an admin, renamed, deactivated); "
    "GET /_emulator/stream (server-sent events of changes); Web API at {url}/api/\n"
)

_STATUS = {
    "channel_not_found": 404,
    "user_not_found": 404,
    "message_not_found": 404,
    "expired_url": 404,
}


def _error(error: EmulatorError | str, status: int | None = None) -> web.Response:
    code = error.error if isinstance(error, EmulatorError) else error
    return web.json_response({"ok": False, "error": code}, status=status or _STATUS.get(code, 400))


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise EmulatorError("invalid_json") from None
    if not isinstance(body, dict):
        raise EmulatorError("invalid_json")
    return body


def _wants_html(request: web.Request) -> bool:
    """A browser navigating here (not curl or a script asking for JSON)."""
    return "text/html" in request.headers.get("Accept", "")


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise EmulatorError("invalid_arguments", f"missing {name}")
    return value


USER_FLAGS = ("is_admin", "is_owner", "is_restricted", "is_ultra_restricted", "deleted")


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise EmulatorError("invalid_arguments", f"{name} must be a string")
    return value or None


def _optional_flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise EmulatorError("invalid_arguments", f"{name} must be true or false")
    return value


class ControlApi:
    """The `/_emulator` routes (and `/`, and permalinks) of one emulator."""

    def __init__(self, emulator: SlackEmulator) -> None:
        self.emu = emulator

    def routes(self) -> list[web.RouteDef]:
        """Routes to add to the emulator's aiohttp application."""
        return [
            web.get("/", self.index),
            web.post("/_emulator/messages", self.post_message),
            web.get("/_emulator/threads/{channel}/{thread_ts}", self.thread),
            web.get("/_emulator/channels", self.channels),
            web.get("/_emulator/channels/{channel}/messages", self.channel_messages),
            web.get("/_emulator/users", self.users),
            web.post("/_emulator/users", self.join_workspace),
            web.post("/_emulator/users/{user}", self.change_user),
            web.get("/_emulator/calls", self.calls),
            web.get("/_emulator/ephemerals", self.ephemerals),
            web.get("/_emulator/command_responses", self.command_responses),
            web.post("/_emulator/commands", self.command),
            web.post("/_emulator/actions", self.action),
            web.post("/_emulator/message_actions", self.message_action),
            web.post("/_emulator/response_url/{command_id}", self.response_url),
            web.get("/archives/{channel}/{permalink}", self.archive),
        ]

    async def index(self, request: web.Request) -> web.StreamResponse:
        """The playground page for browsers; for everyone else a hint of the control API."""
        if _wants_html(request):
            return await self.emu.playground.page(request)
        return web.Response(text=HINT.format(url=self.emu.url, bot=self.emu.config.bot_user_id))

    async def post_message(self, request: web.Request) -> web.Response:
        """POST {user, channel, text, thread_ts?}: a human posts a message."""
        try:
            body = await _json_body(request)
            thread_ts = body.get("thread_ts")
            result = await self.emu.post_message(
                _field(body, "user"),
                _field(body, "channel"),
                str(body.get("text") or ""),
                thread_ts=str(thread_ts) if thread_ts else None,
            )
        except EmulatorError as error:
            return _error(error)
        return web.json_response(result)

    async def thread(self, request: web.Request) -> web.Response:
        """GET a thread: parent first, then replies."""
        channel = request.match_info["channel"]
        if channel not in self.emu.workspace.channels:
            return _error("channel_not_found")
        messages = self.emu.thread(channel, request.match_info["thread_ts"])
        return web.json_response({"ok": True, "messages": messages})

    async def channels(self, request: web.Request) -> web.Response:
        """GET every conversation, with its members."""
        config = self.emu.config
        channels = [
            {**c.to_api(config.team_id, config.bot_user_id), "members": c.members}
            for c in self.emu.workspace.channels.values()
        ]
        return web.json_response({"ok": True, "channels": channels})

    async def channel_messages(self, request: web.Request) -> web.Response:
        """GET a channel's top-level messages, oldest first."""
        channel = request.match_info["channel"]
        if channel not in self.emu.workspace.channels:
            return _error("channel_not_found")
        return web.json_response({"ok": True, "messages": self.emu.messages(channel)})

    async def users(self, request: web.Request) -> web.Response:
        """GET every user."""
        team_id = self.emu.config.team_id
        users = [u.to_api(team_id) for u in self.emu.workspace.users.values()]
        return web.json_response({"ok": True, "users": users})

    async def join_workspace(self, request: web.Request) -> web.Response:
        """POST {id, name, real_name?, guest?, single_channel?, channels?}: someone joins the
        workspace (`team_join`)."""
        try:
            body = await _json_body(request)
            channels = body.get("channels") or []
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                raise EmulatorError("invalid_arguments", "channels must be a list of ids")
            user_id = _field(body, "id")
            await self.emu.join_workspace(
                user_id,
                _field(body, "name"),
                real_name=_optional_text(body, "real_name"),
                guest=bool(body.get("guest")),
                single_channel=bool(body.get("single_channel")),
                channels=channels,
            )
        except EmulatorError as error:
            return _error(error)
        return web.json_response({"ok": True, "user": self._user(user_id)})

    async def change_user(self, request: web.Request) -> web.Response:
        """POST {real_name?, is_admin?, is_owner?, is_restricted?, is_ultra_restricted?,
        deleted?}: an admin changes the account (`user_change`)."""
        user_id = request.match_info["user"]
        try:
            body = await _json_body(request)
            flags = {name: _optional_flag(body, name) for name in USER_FLAGS}
            await self.emu.change_user(
                user_id, real_name=_optional_text(body, "real_name"), **flags
            )
        except EmulatorError as error:
            return _error(error)
        return web.json_response({"ok": True, "user": self._user(user_id)})

    def _user(self, user_id: str) -> dict[str, Any]:
        return self.emu.workspace.user(user_id).to_api(self.emu.config.team_id)

    async def calls(self, request: web.Request) -> web.Response:
        """GET every Web API call received so far, with when it arrived (monotonic seconds)."""
        calls = [
            {"method": method, "args": args, "at": at}
            for (method, args), at in zip(self.emu.calls, self.emu.call_times, strict=True)
        ]
        return web.json_response({"ok": True, "calls": calls})

    async def ephemerals(self, request: web.Request) -> web.Response:
        """GET the ephemeral messages the app posted."""
        return web.json_response({"ok": True, "ephemerals": self.emu.ephemerals})

    async def command_responses(self, request: web.Request) -> web.Response:
        """GET what the app answered to slash commands."""
        return web.json_response({"ok": True, "responses": self.emu.command_responses})

    async def command(self, request: web.Request) -> web.Response:
        """POST {user, channel, command, text}: a human runs a slash command."""
        try:
            body = await _json_body(request)
            result = await self.emu.send_command(
                _field(body, "user"),
                _field(body, "channel"),
                _field(body, "command"),
                str(body.get("text") or ""),
            )
        except EmulatorError as error:
            return _error(error)
        return web.json_response(result)

    async def action(self, request: web.Request) -> web.Response:
        """POST {user, command_id, action_id, value}: a human clicks a button of an answer to
        the slash command `command_id` (e.g. "More results"); the app's HTTP status."""
        try:
            body = await _json_body(request)
            command_id = _field(body, "command_id")
            if command_id not in {r["command_id"] for r in self.emu.command_responses}:
                raise EmulatorError("expired_url", command_id)
            status = await self.emu.press_button(
                _field(body, "user"),
                f"{self.emu.url}/_emulator/response_url/{command_id}",
                _field(body, "action_id"),
                str(body.get("value") or ""),
            )
        except EmulatorError as error:
            return _error(error)
        return web.json_response({"ok": status is not None and status < 300, "status": status})

    async def message_action(self, request: web.Request) -> web.Response:
        """POST {user, channel, ts, action_id, value}: a human clicks a button of a message in a
        channel (e.g. Lore's feedback buttons); the app's HTTP status."""
        try:
            body = await _json_body(request)
            status = await self.emu.press_message_button(
                _field(body, "user"),
                _field(body, "channel"),
                _field(body, "ts"),
                _field(body, "action_id"),
                str(body.get("value") or ""),
            )
        except EmulatorError as error:
            return _error(error)
        return web.json_response({"ok": status is not None and status < 300, "status": status})

    async def response_url(self, request: web.Request) -> web.Response:
        """What the app POSTs to a slash command's response_url."""
        try:
            self.emu.respond_to_command(request.match_info["command_id"], await _json_body(request))
        except EmulatorError as error:
            return _error(error)
        return web.json_response({"ok": True})

    async def archive(self, request: web.Request) -> web.Response:
        """A permalink: the message as JSON, or for a browser the playground showing it."""
        channel = request.match_info["channel"]
        raw = request.match_info["permalink"].removeprefix("p")
        ts = f"{raw[:-6]}.{raw[-6:]}"
        try:
            message = self.emu.workspace.get_message(channel, ts)
        except EmulatorError as error:
            return _error(error)
        if _wants_html(request):
            root = self.emu.workspace.thread_root(channel, ts)
            raise web.HTTPFound(f"/#/{channel}/{root}/{ts}")
        return web.json_response(
            {"ok": True, "message": self.emu.workspace.render(channel, message)}
        )
