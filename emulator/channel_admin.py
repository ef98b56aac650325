"""Channel administration as people do it in Slack, and the events Slack sends the app for it.

- Made private / public: the channel keeps its id; Slack posts a system message in it, subtype
  `channel_convert_to_private` (its event's `channel_type` already `group`) or
  `channel_convert_to_public`, which the app gets as a `message` event if it is a member.
- Shared with another organisation / unshared: `channel_shared` (`connected_team_id`) and
  `channel_unshared` (`previously_connected_team_id`, `is_ext_shared`).
- Archived: a `channel_archive` (or `group_archive`) message in the channel and the event of
  the same name; the channel stays readable.
- Deleted: its messages are gone; `channel_deleted` (public) or `group_deleted` (private).
Events for private channels go to the app only when its bot is a member, as in Slack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.workspace import Channel, EmulatorError

if TYPE_CHECKING:
    from emulator.events import DeliveryRecord
    from emulator.server import SlackEmulator

CONVERT_TEXT = {
    True: "made this channel *private*. Now, it can only be viewed or joined by invitation.",
    False: "made this channel *public*. Any member in this workspace can see and join it.",
}


class ChannelAdmin:
    """Converts, shares, archives and deletes the emulated workspace's channels."""

    def __init__(self, emulator: SlackEmulator) -> None:
        self.emu = emulator

    def _channel(self, ref: str) -> Channel:
        channel = self.emu.workspace.resolve_channel(ref)
        if channel.is_im or channel.is_mpim:
            raise EmulatorError("method_not_supported_for_channel_type", channel.id)
        return channel

    def _sees(self, channel: Channel) -> bool:
        """Whether the app gets events about the channel (public, or its bot is a member)."""
        return not channel.is_private or self.emu.workspace.is_bot_member(channel.id)

    async def convert(self, channel_ref: str, *, private: bool, user: str) -> DeliveryRecord | None:
        """`user` makes the channel private (or public); the system message goes to the app."""
        channel = self._channel(channel_ref)
        self.emu.workspace.user(user)
        if channel.is_private == private:
            raise EmulatorError("already_" + ("private" if private else "public"), channel.id)
        channel.is_private = private
        subtype = "channel_convert_to_private" if private else "channel_convert_to_public"
        text = CONVERT_TEXT[private]
        message = {"type": "message", "subtype": subtype, "user": user, "text": text}
        self.emu.workspace.add_message(channel.id, message)
        self.emu.playground.workspace_changed()
        if not self.emu.workspace.is_bot_member(channel.id):
            return None
        event = {**message, "channel": channel.id, "channel_type": channel.channel_type}
        return await self.emu.emit_event({**event, "event_ts": message["ts"]})

    async def share(self, channel_ref: str, connected_team_id: str) -> DeliveryRecord | None:
        """The channel is shared with another organisation (Slack Connect)."""
        channel = self._channel(channel_ref)
        if connected_team_id not in channel.connected_team_ids:
            channel.connected_team_ids.append(connected_team_id)
        channel.is_ext_shared = True
        self.emu.playground.workspace_changed()
        if not self._sees(channel):
            return None
        event = {"type": "channel_shared", "connected_team_id": connected_team_id}
        return await self.emu.emit_event({**event, "channel": channel.id})

    async def unshare(self, channel_ref: str, connected_team_id: str) -> DeliveryRecord | None:
        """Another organisation leaves the shared channel."""
        channel = self._channel(channel_ref)
        teams = channel.connected_team_ids
        if connected_team_id in teams:
            teams.remove(connected_team_id)
        channel.is_ext_shared = bool(teams)
        self.emu.playground.workspace_changed()
        if not self._sees(channel):
            return None
        event: dict[str, Any] = {
            "type": "channel_unshared",
            "previously_connected_team_id": connected_team_id,
            "channel": channel.id,
            "is_ext_shared": bool(teams),
        }
        return await self.emu.emit_event(event)

    async def archive(self, channel_ref: str, *, user: str) -> DeliveryRecord | None:
        """`user` archives the channel: its history stays readable."""
        channel = self._channel(channel_ref)
        self.emu.workspace.user(user)
        channel.is_archived = True
        kind = "group_archive" if channel.is_private else "channel_archive"
        message = {"type": "message", "subtype": kind, "user": user, "text": "archived the channel"}
        self.emu.workspace.add_message(channel.id, message)
        self.emu.playground.workspace_changed()
        if not self._sees(channel):
            return None
        if self.emu.workspace.is_bot_member(channel.id):
            await self.emu.emit_event(
                {**message, "channel": channel.id, "channel_type": channel.channel_type}
            )
        return await self.emu.emit_event({"type": kind, "channel": channel.id, "user": user})

    async def delete(self, channel_ref: str, *, user: str) -> DeliveryRecord | None:
        """`user` deletes the channel and every message in it."""
        channel = self._channel(channel_ref)
        self.emu.workspace.user(user)
        seen = self._sees(channel)
        self.emu.workspace.channels.pop(channel.id)
        self.emu.workspace.messages.pop(channel.id, None)
        self.emu.playground.workspace_changed()
        if not seen:
            return None
        kind = "group_deleted" if channel.is_private else "channel_deleted"
        event: dict[str, Any] = {"type": kind, "channel": channel.id, "actor_id": user}
        return await self.emu.emit_event(event)

    def routes(self) -> list[web.RouteDef]:
        """`POST /_emulator/channels/{channel}/{action}` with a JSON body: `private`/`public`
        {user}, `share`/`unshare` {team}, `archive`/`delete` {user}."""
        return [web.post("/_emulator/channels/{channel}/{action}", self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        channel, action = request.match_info["channel"], request.match_info["action"]
        try:
            body = await request.json() if request.body_exists else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"ok": False, "error": "invalid_json"}, status=400)
        user, team = str(body.get("user") or ""), str(body.get("team") or "")
        try:
            if action in ("private", "public"):
                await self.convert(channel, private=action == "private", user=user)
            elif action in ("share", "unshare") and team:
                await (self.share if action == "share" else self.unshare)(channel, team)
            elif action == "archive":
                await self.archive(channel, user=user)
            elif action == "delete":
                await self.delete(channel, user=user)
            else:
                return web.json_response({"ok": False, "error": "invalid_arguments"}, status=400)
        except EmulatorError as error:
            status = 404 if error.error.endswith("_not_found") else 400
            return web.json_response({"ok": False, "error": error.error}, status=status)
        return web.json_response({"ok": True, "channel": channel})
