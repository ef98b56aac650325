"""`SlackEmulator`: one local Slack workspace served over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from emulator import payloads
from emulator.api import ApiContext
from emulator.channel_admin import ChannelAdmin
from emulator.commands import SlashCommands
from emulator.config import EmulatorConfig
from emulator.control import ControlApi
from emulator.events import DeliveryRecord, EventDelivery
from emulator.faults import FaultInjector
from emulator.guard import request_guard
from emulator.interactions import MessageButtons
from emulator.notifier import Notifier
from emulator.oauth import OAuthServer
from emulator.playground import WATCHED_METHODS, Playground
from emulator.socket_mode import SocketModeHub
from emulator.view_interactions import ViewInteractions
from emulator.web_api import WebApi
from emulator.workspace import Channel, EmulatorError, User, Workspace

log = logging.getLogger(__name__)


class SlackEmulator:
    """Plays Slack towards one app: Web API, Events API, Socket Mode and slash commands.

    In-process helpers let tests act as humans (post_message, edit_message, send_command…),
    inspect what the app did (calls, thread, statuses, ephemerals, views…) and wait for it.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        cfg = self.config
        self.workspace = Workspace(
            team_id=cfg.team_id,
            team_domain=cfg.team_domain,
            team_name=cfg.team_name,
            bot_user_id=cfg.bot_user_id,
            bot_id=cfg.bot_id,
            bot_name=cfg.bot_name,
            app_id=cfg.app_id,
        )
        if cfg.seed_demo:
            self.workspace.seed_demo()
        self.socket = SocketModeHub(cfg.app_id)
        self.delivery = EventDelivery(cfg, self.socket)
        self.notifier = Notifier(cfg, self.workspace, self.delivery)
        self.faults = FaultInjector()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[float] = []  # time.monotonic() of each entry of `calls`
        context = ApiContext(cfg, self.workspace, self.notifier, lambda: self.url, self._socket_url)
        self.web_api = WebApi(context, self.faults, self.calls, self.call_times)
        self.limit_refusals = self.web_api.limit_refusals
        """Calls and response_url answers refused for breaking Slack's size limits."""
        self.oauth = OAuthServer(cfg, self.workspace)
        self.web_api.oauth = self.oauth
        self.commands = SlashCommands(
            cfg, self.workspace, self.delivery, self.socket, self.notifier, lambda: self.url
        )
        self.commands.limit_refusals = self.limit_refusals
        self.buttons = MessageButtons(cfg, self.workspace, self.delivery, self.socket)
        self.view_interactions = ViewInteractions(cfg, self.workspace, self.delivery, self.socket)
        self.control = ControlApi(self)
        self.channel_admin = ChannelAdmin(self)
        self.playground = Playground(self)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # lifecycle

    async def start(self) -> None:
        """Listen on config.host:config.port (0 picks a free port)."""
        app = web.Application(middlewares=[request_guard(self.config.host, lambda: self.url)])
        app.router.add_route("GET", "/api/{method}", self._web_api)
        app.router.add_route("POST", "/api/{method}", self._web_api)
        app.router.add_get("/oauth/v2/authorize", self.oauth.authorize)
        app.router.add_get("/_emulator/socket", self.socket.handle)
        app.add_routes(self.control.routes())
        app.add_routes(self.channel_admin.routes())
        app.add_routes(self.playground.routes())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        port = runner.addresses[0][1]
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "", "::") else self.config.host
        self._runner = runner
        self._url = f"http://{host}:{port}"
        await self.delivery.start()
        await self.playground.start()
        log.info("Slack emulator listening on %s", self._url)

    async def stop(self) -> None:
        """Cancel pending deliveries, close sockets and stop listening (saving the workspace
        first when the playground keeps it in a file)."""
        await self.playground.close()
        await self.delivery.close()
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:PORT" (start() first)."""
        if self._url is None:
            raise RuntimeError("the emulator is not started")
        return self._url

    @property
    def api_url(self) -> str:
        """What slack_sdk's `base_url` must be: url + "/api/"."""
        return self.url + "/api/"

    def _socket_url(self) -> str:
        return self.socket.issue_url("ws" + self.url.removeprefix("http"))

    async def _web_api(self, request: web.Request) -> web.Response:
        """The Web API, telling the playground what the app changed."""
        response = await self.web_api.handle(request)
        method = request.match_info["method"]
        if method in WATCHED_METHODS and self.playground.watching and self.calls:
            called, args = self.calls[-1]
            if called == method and response.text:
                self.playground.api_call(method, args, json.loads(response.text))
        return response

    # what the app did

    @property
    def ephemerals(self) -> list[dict[str, Any]]:
        """Messages the app posted with chat.postEphemeral."""
        return self.workspace.ephemerals

    @property
    def statuses(self) -> dict[tuple[str, str], str]:
        """Current assistant thread status per (channel, thread_ts); absent once cleared."""
        return self.workspace.statuses

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """The App Home view published per user id."""
        return self.workspace.views

    @property
    def socket_acks(self) -> list[dict[str, Any]]:
        """Every Socket Mode acknowledgement (`{"envelope_id": …}`) the app sent."""
        return self.socket.acks

    @property
    def command_responses(self) -> list[dict[str, Any]]:
        """Answers to slash commands: immediate ones (`via: ack`) and via response_url."""
        return self.commands.responses

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        """Every event delivery with its attempts."""
        return self.delivery.records

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event_callback body the emulator sent (or tried to)."""
        return [record.body for record in self.delivery.records]

    # workspace set-up

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        email: str | None = None,
    ) -> User:
        """Add a user (with a DM channel D… shared with the bot)."""
        user = self.workspace.add_user(
            user_id,
            name,
            real_name=real_name,
            is_admin=is_admin,
            is_owner=is_owner,
            is_bot=is_bot,
            email=email,
        )
        self.playground.workspace_changed()
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        is_private: bool = False,
        is_im: bool = False,
        members: list[str] | tuple[str, ...] = (),
        *,
        is_mpim: bool = False,
        bot_member: bool = True,
    ) -> Channel:
        """Add a conversation; the bot is a member unless `bot_member=False`."""
        channel = self.workspace.add_channel(
            channel_id,
            name,
            is_private=is_private,
            is_im=is_im,
            is_mpim=is_mpim,
            members=members,
            bot_member=bot_member,
        )
        self.playground.workspace_changed()
        return channel

    def add_guest(
        self,
        user_id: str,
        name: str,
        channels: list[str] | tuple[str, ...],
        *,
        single_channel: bool = False,
    ) -> User:
        """A guest (`is_restricted`; `is_ultra_restricted` for a single-channel guest), member
        of `channels` only."""
        user = self.workspace.add_user(user_id, name)
        user.is_restricted = True
        user.is_ultra_restricted = single_channel
        self._join_quietly(user_id, channels)
        return user

    def add_external_user(
        self, user_id: str, name: str, team_id: str, channels: list[str] | tuple[str, ...]
    ) -> User:
        """A member of another organisation (its own `team_id`), in shared `channels` only."""
        user = self.workspace.add_user(user_id, name, create_dm=False)
        user.home_team_id = team_id
        self._join_quietly(user_id, channels)
        return user

    def set_ext_shared(self, channel: str, shared: bool = True) -> Channel:
        """Mark a channel as shared with another organisation (conversations.info
        `is_ext_shared`), without any event."""
        conversation = self.workspace.channel(channel)
        conversation.is_ext_shared = shared
        self.playground.workspace_changed()
        return conversation

    async def join_workspace(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        guest: bool = False,
        single_channel: bool = False,
        channels: list[str] | tuple[str, ...] = (),
    ) -> DeliveryRecord:
        """Someone joins the workspace (a guest if `guest`, member of `channels`): the app gets
        `team_join` with their user object."""
        user = self.workspace.add_user(user_id, name, real_name=real_name)
        user.is_restricted = guest or single_channel
        user.is_ultra_restricted = single_channel
        self._join_quietly(user_id, channels)
        return await self.emit_event({"type": "team_join", "user": self._user_object(user)})

    async def change_user(
        self,
        user_id: str,
        *,
        real_name: str | None = None,
        is_admin: bool | None = None,
        is_owner: bool | None = None,
        is_restricted: bool | None = None,
        is_ultra_restricted: bool | None = None,
        deleted: bool | None = None,
    ) -> DeliveryRecord:
        """An admin changes someone's account (made a guest or an admin, renamed, deactivated):
        the app gets `user_change` with the whole new user object, as from Slack."""
        user = self.workspace.user(user_id)
        if real_name is not None:
            user.real_name = real_name
        if is_owner is not None:
            user.is_owner = user.is_primary_owner = is_owner
        if is_admin is not None:
            user.is_admin = is_admin
        if is_restricted is not None:
            user.is_restricted = is_restricted
        if is_ultra_restricted is not None:
            user.is_ultra_restricted = is_ultra_restricted
        if deleted is not None:
            user.deleted = deleted
        user.updated = int(time.time())
        self.playground.workspace_changed()
        return await self.emit_event({"type": "user_change", "user": self._user_object(user)})

    def _user_object(self, user: User) -> dict[str, Any]:
        return user.to_api(self.config.team_id)

    def _join_quietly(self, user_id: str, channels: list[str] | tuple[str, ...]) -> None:
        for channel_id in channels:
            members = self.workspace.channel(channel_id).members
            if user_id not in members:
                members.append(user_id)
        self.playground.workspace_changed()

    def fail_method(
        self,
        method: str,
        error: str = "internal_error",
        times: int = 1,
        *,
        status: int | None = None,
        after: int = 0,
        retry_after: int = 1,
    ) -> None:
        """Make the next `times` calls of a Web API method fail (ratelimited → HTTP 429 with
        `Retry-After: retry_after`), once `after` more calls have succeeded."""
        self.faults.add(method, error, times, status=status, after=after, retry_after=retry_after)

    def slow_method(self, method: str, seconds: float) -> None:
        """Answer every later call of a Web API method only after `seconds` (0: no delay)."""
        self.faults.slow(method, seconds)

    def timed_calls(self, method: str) -> list[float]:
        """When (time.monotonic()) each call of `method` arrived, in order."""
        return [
            at
            for (called, _), at in zip(self.calls, self.call_times, strict=True)
            if called == method
        ]

    async def join_channel(
        self, channel: str, user: str | None = None, inviter: str | None = None
    ) -> DeliveryRecord:
        """`user` (default: the app's bot) joins a channel; the app gets member_joined_channel."""
        conversation = self.workspace.channel(channel)
        member = user or self.config.bot_user_id
        if member not in conversation.members:
            conversation.members.append(member)
        self.playground.workspace_changed()
        event: dict[str, Any] = {
            "type": "member_joined_channel",
            "user": member,
            "channel": conversation.id,
            "channel_type": "G" if conversation.is_private else "C",
            "team": self.config.team_id,
        }
        if inviter:
            event["inviter"] = inviter
        return await self.emit_event(event)

    # acting as humans

    async def post_message(
        self,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        ts: str | None = None,
        deliver: bool = True,
    ) -> dict[str, Any]:
        """`user` posts `text`; the app gets `message` (and `app_mention` when mentioned)."""
        workspace = self.workspace
        author = workspace.user(user)
        conversation = workspace.channel(channel)
        if author.id not in conversation.members:
            if conversation.is_private:
                raise EmulatorError("not_in_channel", f"{user} is not in {channel}")
            conversation.members.append(author.id)
        parent_user = None
        if thread_ts:
            thread_ts = workspace.thread_root(conversation.id, thread_ts)
            parent = workspace.messages.get(conversation.id, {}).get(thread_ts)
            parent_user = parent.get("user") if parent else None
        message = payloads.user_message(author.id, text, workspace.team_id, thread_ts, parent_user)
        workspace.add_message(conversation.id, message, ts)
        self.playground.message(conversation.id, message["ts"])
        if deliver:
            self.notifier.message_posted(conversation.id, message)
        return {
            "ok": True,
            "channel": conversation.id,
            "ts": message["ts"],
            "thread_ts": thread_ts,
            "permalink": workspace.permalink(self.url, conversation.id, message["ts"]),
        }

    async def edit_message(self, channel: str, ts: str, new_text: str) -> dict[str, Any]:
        """Edit a message; the app gets `message_changed` with `message` and `previous_message`."""
        message = self.workspace.get_message(channel, ts)
        previous = copy.deepcopy(message)
        message["text"] = new_text
        if not self.workspace.is_from_bot(message):
            message["blocks"] = payloads.rich_text_blocks(new_text)
        message["edited"] = {"user": message.get("user"), "ts": self.workspace.clock.next()}
        self.playground.message(channel, ts)
        self.notifier.message_changed(channel, message, previous)
        rendered = self.workspace.render(channel, message)
        return {"ok": True, "channel": channel, "ts": ts, "message": rendered}

    async def delete_message(self, channel: str, ts: str) -> dict[str, Any]:
        """Delete a message; the app gets `message_deleted`."""
        message = self.workspace.remove_message(channel, ts)
        self.playground.message_deleted(channel, ts, message.get("thread_ts"))
        self.notifier.message_deleted(channel, message)
        return {"ok": True, "channel": channel, "ts": ts}

    async def send_command(
        self, user: str, channel: str, command: str, text: str = ""
    ) -> dict[str, Any]:
        """`user` runs a slash command; returns the app's acknowledgement (see SlashCommands)."""
        try:
            return await self.commands.send(user, channel, command, text)
        finally:
            self.playground.command_responses()

    def respond_to_command(self, command_id: str, body: dict[str, Any]) -> None:
        """What the app POSTs to a slash command's response_url (see SlashCommands.respond)."""
        self.commands.respond(command_id, body)
        self.playground.command_responses()

    async def press_button(
        self, user: str, response_url: str, action_id: str, value: str
    ) -> int | None:
        """`user` clicks a button in an answer sent to `response_url`; the app's HTTP status."""
        return await self.commands.press_button(user, response_url, action_id, value)

    async def press_message_button(
        self, user: str, channel: str, ts: str, action_id: str, value: str
    ) -> int | None:
        """`user` clicks a button (or feedback button) of message `ts`; the app's HTTP status."""
        return await self.buttons.press(user, channel, ts, action_id, value)

    async def uninstall_app(self) -> int:
        """A workspace admin removes the app: Slack sends `app_uninstalled`; the HTTP status."""
        return await self.deliver_event({"type": "app_uninstalled"})

    async def revoke_tokens(
        self, *, bot: bool = True, users: list[str] | tuple[str, ...] = ()
    ) -> int:
        """Tokens are revoked: `tokens_revoked` lists the bot user (if `bot`) and `users`."""
        tokens = {"oauth": list(users), "bot": [self.config.bot_user_id] if bot else []}
        return await self.deliver_event({"type": "tokens_revoked", "tokens": tokens})

    # channel administration (see emulator.channel_admin)

    async def convert_channel(
        self, channel: str, *, private: bool, user: str
    ) -> DeliveryRecord | None:
        """`user` makes a channel private (or public); the app gets the system message."""
        return await self.channel_admin.convert(channel, private=private, user=user)

    async def share_channel(self, channel: str, team_id: str) -> DeliveryRecord | None:
        """The channel is shared with another organisation: `channel_shared`."""
        return await self.channel_admin.share(channel, team_id)

    async def unshare_channel(self, channel: str, team_id: str) -> DeliveryRecord | None:
        """Another organisation leaves the channel: `channel_unshared`."""
        return await self.channel_admin.unshare(channel, team_id)

    async def archive_channel(self, channel: str, *, user: str) -> DeliveryRecord | None:
        """`user` archives a channel: `channel_archive` / `group_archive`."""
        return await self.channel_admin.archive(channel, user=user)

    async def delete_channel(self, channel: str, *, user: str) -> DeliveryRecord | None:
        """`user` deletes a channel: `channel_deleted` / `group_deleted`."""
        return await self.channel_admin.delete(channel, user=user)

    # raw deliveries

    async def deliver_event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        signing_secret: str | None = None,
        timestamp: int | None = None,
    ) -> int:
        """POST one signed event_callback wrapping `event` to events_url; the HTTP status."""
        return await self.delivery.deliver_once(
            event,
            event_id=event_id,
            retry_num=retry_num,
            retry_reason=retry_reason,
            signing_secret=signing_secret,
            timestamp=timestamp,
        )

    async def emit_event(self, event: dict[str, Any]) -> DeliveryRecord:
        """Deliver any inner event in the background, with retries, like the automatic ones."""
        event = dict(event)
        event.setdefault("event_ts", self.workspace.clock.next())
        return self.delivery.enqueue(event)

    async def open_app_home(self, user: str, tab: str = "home") -> DeliveryRecord:
        """`user` opens the app's Home tab: an `app_home_opened` event (with their view)."""
        author = self.workspace.user(user)
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": author.id,
            "channel": self.workspace.dm_with(author.id).id,
            "tab": tab,
        }
        if tab == "home" and author.id in self.workspace.views:
            event["view"] = copy.deepcopy(self.workspace.views[author.id])
        return await self.emit_event(event)

    async def send_raw(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST exactly `body` with exactly `headers` (unsigned) to events_url."""
        status, text, _ = await self.delivery.post(body, headers, wait_seconds=30.0, signed=False)
        return status, text

    async def drain(self) -> None:
        """Wait until every pending event delivery (with its retries) is finished."""
        await self.delivery.drain()

    # reading the workspace

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Copies of a thread's messages, parent first (a stream shows its text so far)."""
        root = self.workspace.thread_root(channel, thread_ts)
        return [self.workspace.render(channel, m) for m in self.workspace.thread(channel, root)]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Copies of a channel's top-level messages, oldest first."""
        return [self.workspace.render(channel, m) for m in self.workspace.top_level(channel)]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A copy of one message."""
        return self.workspace.render(channel, self.workspace.get_message(channel, ts))

    def bot_replies(
        self, channel: str, thread_ts: str, finished: bool = True
    ) -> list[dict[str, Any]]:
        """The bot's replies in a thread; `finished` leaves out streams still in progress."""
        return [
            m
            for m in self.thread(channel, thread_ts)[1:]
            if self.workspace.is_from_bot(m)
            and not (finished and m.get("streaming_state") == "in_progress")
        ]

    # waiting

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10.0,  # noqa: ASYNC109 - the documented public signature
        *,
        interval: float = 0.01,
        description: str | None = None,
    ) -> Any:
        """Poll `predicate()` (sync or async) until truthy and return its value.

        Raises TimeoutError naming the condition, its last value and recent activity.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if loop.time() >= deadline:
                what = description or getattr(predicate, "__name__", repr(predicate))
                raise TimeoutError(
                    f"{what} still not true after {timeout}s (last value {value!r}); "
                    f"{self._activity()}"
                )
            await asyncio.sleep(interval)

    async def wait_for_reply(
        self,
        channel: str,
        thread_ts: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - the documented public signature
        *,
        finished: bool = True,
    ) -> list[dict[str, Any]]:
        """Wait until the thread holds at least `count` bot replies and return them.

        A plain bot message counts as soon as it exists. A streamed message (chat.startStream)
        counts once it is finished (chat.stopStream or chat.update), unless `finished=False`,
        in which case it counts as soon as it exists and shows its text so far.
        """

        def replies() -> list[dict[str, Any]] | None:
            found = self.bot_replies(channel, thread_ts, finished)
            return found if len(found) >= count else None

        description = f"{count} bot repl{'y' if count == 1 else 'ies'} in {channel}/{thread_ts}"
        result: list[dict[str, Any]] = await self.wait_for(
            replies, timeout, description=description
        )
        return result

    def _activity(self) -> str:
        calls = ", ".join(method for method, _ in self.calls[-8:]) or "none"
        failed = [r.event_id for r in self.delivery.records if r.done and not r.delivered]
        return (
            f"last Web API calls: {calls}; pending deliveries: {self.delivery.pending}; "
            f"undelivered events: {failed[-5:] or 'none'}"
        )
