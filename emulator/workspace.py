"""In-memory state of the emulated workspace: users, channels, messages and app-visible extras."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from emulator.ids import TsClock, ts_key

Message = dict[str, Any]


class EmulatorError(Exception):
    """A request the emulator refuses; `error` is the Slack-style error code."""

    def __init__(self, error: str, detail: str = "") -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error


@dataclass
class User:
    """A workspace member (human or bot)."""

    id: str
    name: str
    real_name: str = ""
    is_admin: bool = False
    is_owner: bool = False
    is_primary_owner: bool = False
    is_bot: bool = False
    email: str | None = None
    tz: str = "Europe/London"
    deleted: bool = False
    bot_id: str | None = None
    app_id: str | None = None
    updated: int = field(default_factory=lambda: int(time.time()))
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    home_team_id: str | None = None
    """Set for a member of another organisation (Slack Connect): their own team id."""

    def to_api(self, team_id: str) -> dict[str, Any]:
        """The `user` object of users.info / users.list."""
        real_name = self.real_name or self.name
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "status_text": "",
            "status_emoji": "",
            "avatar_hash": "",
            "image_48": f"https://avatars.invalid/{self.id}_48.png",
            "image_72": f"https://avatars.invalid/{self.id}_72.png",
            "team": self.home_team_id or team_id,
        }
        if self.email:
            profile["email"] = self.email
        if self.is_bot:
            profile["bot_id"] = self.bot_id
            profile["api_app_id"] = self.app_id
            profile["always_active"] = True
        return {
            "id": self.id,
            "team_id": self.home_team_id or team_id,
            "name": self.name,
            "deleted": self.deleted,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": self.tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_primary_owner,
            "is_restricted": self.is_restricted or self.is_ultra_restricted,
            "is_ultra_restricted": self.is_ultra_restricted,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": self.updated,
        }


@dataclass
class Channel:
    """A conversation: public or private channel, DM (im) or group DM (mpim)."""

    id: str
    name: str
    is_private: bool = False
    is_im: bool = False
    is_mpim: bool = False
    members: list[str] = field(default_factory=list)
    user: str | None = None
    creator: str = ""
    is_archived: bool = False
    topic: str = ""
    purpose: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    is_ext_shared: bool = False
    """Shared with another organisation (Slack Connect)."""
    connected_team_ids: list[str] = field(default_factory=list)
    """The other organisations it is shared with (`share_channel`), kept with the workspace."""

    @property
    def channel_type(self) -> str:
        """The `channel_type` Slack puts on message events: channel, group, im or mpim."""
        if self.is_im:
            return "im"
        if self.is_mpim:
            return "mpim"
        return "group" if self.is_private else "channel"

    def to_api(self, team_id: str, bot_user_id: str) -> dict[str, Any]:
        """The `channel` object of conversations.info / conversations.list."""
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_archived": self.is_archived,
                "is_im": True,
                "is_org_shared": False,
                "context_team_id": team_id,
                "updated": self.created * 1000,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_mpim,
            "is_group": self.is_mpim,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private or self.is_mpim,
            "created": self.created,
            "is_archived": self.is_archived,
            "is_general": self.name == "general",
            "unlinked": 0,
            "name_normalized": self.name,
            "is_shared": self.is_ext_shared,
            "is_org_shared": False,
            "is_ext_shared": self.is_ext_shared,
            "is_pending_ext_shared": False,
            "context_team_id": team_id,
            "updated": self.created * 1000,
            "creator": self.creator,
            "is_member": bot_user_id in self.members,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": self.purpose, "creator": "", "last_set": 0},
            "previous_names": [],
            "num_members": len(self.members),
        }


class Workspace:
    """Users, channels and messages of one team, plus what the app stored (views, statuses…)."""

    def __init__(
        self,
        *,
        team_id: str,
        team_domain: str,
        team_name: str,
        bot_user_id: str,
        bot_id: str,
        bot_name: str,
        app_id: str,
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.clock = TsClock()
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, dict[str, Message]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.statuses: dict[tuple[str, str], str] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.modals: dict[str, dict[str, Any]] = {}  # open modals by view id (emulator.api.views)
        self.exchanged_triggers: set[str] = set()
        self.trigger_users: dict[str, str] = {}  # trigger id -> the user whose action issued it
        self._replies: dict[tuple[str, str], set[str]] = {}
        self.add_user(
            bot_user_id,
            bot_name,
            real_name=bot_name.capitalize(),
            is_bot=True,
            bot_id=bot_id,
            app_id=app_id,
            create_dm=False,
        )

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
        bot_id: str | None = None,
        app_id: str | None = None,
        create_dm: bool = True,
    ) -> User:
        """Add (or replace) a user; by default also open a DM between them and the bot."""
        user = User(
            id=user_id,
            name=name,
            real_name=real_name or name.capitalize(),
            is_admin=is_admin or is_owner,
            is_owner=is_owner,
            is_primary_owner=is_owner,
            is_bot=is_bot,
            email=email if email is not None else (None if is_bot else f"{name}@example.com"),
            bot_id=bot_id,
            app_id=app_id,
        )
        self.users[user_id] = user
        if create_dm:
            self.dm_with(user_id)
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        is_im: bool = False,
        is_mpim: bool = False,
        members: list[str] | tuple[str, ...] = (),
        bot_member: bool = True,
        user: str | None = None,
    ) -> Channel:
        """Add (or replace) a conversation; the bot joins it unless `bot_member` is False."""
        member_ids = list(dict.fromkeys(members))
        if bot_member and self.bot_user_id not in member_ids:
            member_ids.append(self.bot_user_id)
        if is_im and user is None:
            user = next((m for m in member_ids if m != self.bot_user_id), None)
        channel = Channel(
            id=channel_id,
            name=name,
            is_private=is_private or is_im or is_mpim,
            is_im=is_im,
            is_mpim=is_mpim,
            members=member_ids,
            user=user,
            creator=member_ids[0] if member_ids else "",
        )
        self.channels[channel_id] = channel
        self.messages.setdefault(channel_id, {})
        return channel

    def dm_with(self, user_id: str) -> Channel:
        """The DM channel between the bot and `user_id` (D + the user id without its U)."""
        for channel in self.channels.values():
            if channel.is_im and channel.user == user_id:
                return channel
        channel_id = "D" + user_id[1:]
        return self.add_channel(channel_id, channel_id, is_im=True, members=[user_id], user=user_id)

    def seed_demo(self) -> None:
        """A few users and channels to play with (see EmulatorConfig.seed_demo)."""
        self.add_user("U0ALICE", "alice", real_name="Alice Anders", is_owner=True)
        self.add_user("U0BOB", "bob", real_name="Bob Brown")
        self.add_user("U0CAROL", "carol", real_name="Carol Chen", is_admin=True)
        everyone = ["U0ALICE", "U0BOB", "U0CAROL"]
        self.add_channel("C0GENERAL", "general", members=everyone)
        self.add_channel("C0RANDOM", "random", members=everyone)
        self.add_channel("C0LEADS", "leadership", is_private=True, members=["U0ALICE", "U0CAROL"])
        self.channels["C0GENERAL"].purpose = "Company-wide announcements and work-based matters"

    def user(self, user_id: str) -> User:
        """The user, or EmulatorError("user_not_found")."""
        found = self.users.get(user_id)
        if found is None:
            raise EmulatorError("user_not_found", user_id)
        return found

    def channel(self, channel_id: str) -> Channel:
        """The channel, or EmulatorError("channel_not_found")."""
        found = self.channels.get(channel_id)
        if found is None:
            raise EmulatorError("channel_not_found", channel_id)
        return found

    def resolve_channel(self, ref: str) -> Channel:
        """A channel from an id, a name (`general` / `#general`) or a user id (their DM)."""
        if ref in self.channels:
            return self.channels[ref]
        if ref in self.users and ref != self.bot_user_id:
            return self.dm_with(ref)
        name = ref.removeprefix("#")
        for channel in self.channels.values():
            if not channel.is_im and channel.name == name:
                return channel
        raise EmulatorError("channel_not_found", ref)

    def is_bot_member(self, channel_id: str) -> bool:
        """Whether the app's bot user is in the channel (and so gets its events)."""
        channel = self.channels.get(channel_id)
        return channel is not None and self.bot_user_id in channel.members

    def add_message(self, channel_id: str, message: Message, ts: str | None = None) -> Message:
        """Store a message, allocating its ts unless given; returns the stored dict."""
        self.channel(channel_id)
        store = self.messages.setdefault(channel_id, {})
        if ts is None:
            ts = self.clock.next()
        elif ts in store:
            raise EmulatorError("ts_taken", f"{channel_id} already has a message at {ts}")
        else:
            self.clock.observe(ts)
        message["ts"] = ts
        store[ts] = message
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != ts:
            self._replies.setdefault((channel_id, thread_ts), set()).add(ts)
        return message

    def get_message(self, channel_id: str, ts: str) -> Message:
        """The stored message (not a copy), or EmulatorError("message_not_found")."""
        found = self.messages.get(channel_id, {}).get(ts)
        if found is None:
            raise EmulatorError("message_not_found", f"{channel_id}/{ts}")
        return found

    def remove_message(self, channel_id: str, ts: str) -> Message:
        """Delete a message; a thread parent with replies leaves a tombstone, as in Slack."""
        message = self.get_message(channel_id, ts)
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != ts:
            self._replies.get((channel_id, thread_ts), set()).discard(ts)
        if self._replies.get((channel_id, ts)):
            self.messages[channel_id][ts] = {
                "type": "message",
                "subtype": "tombstone",
                "text": "This message was deleted.",
                "user": "USLACKBOT",
                "hidden": True,
                "ts": ts,
                "thread_ts": ts,
            }
        else:
            del self.messages[channel_id][ts]
        return message

    def thread_root(self, channel_id: str, ts: str) -> str:
        """The parent ts of the thread `ts` belongs to (itself if it is a parent or alone)."""
        message = self.messages.get(channel_id, {}).get(ts)
        if message is None:
            return ts
        return str(message.get("thread_ts") or ts)

    def thread(self, channel_id: str, thread_ts: str) -> list[Message]:
        """The stored messages of a thread, parent first, then replies in ts order."""
        store = self.messages.get(channel_id, {})
        replies = sorted(self._replies.get((channel_id, thread_ts), set()), key=ts_key)
        parent = [store[thread_ts]] if thread_ts in store else []
        return parent + [store[ts] for ts in replies if ts in store]

    def top_level(self, channel_id: str) -> list[Message]:
        """Messages shown in the channel itself (not replies), oldest first."""
        store = self.messages.get(channel_id, {})
        shown = [
            message
            for ts, message in store.items()
            if message.get("thread_ts") in (None, ts)
            or message.get("subtype") == "thread_broadcast"
        ]
        return sorted(shown, key=lambda message: ts_key(message["ts"]))

    def render(self, channel_id: str, message: Message, *, metadata: bool = True) -> Message:
        """A copy of a stored message as the Web API returns it (thread summary on parents)."""
        rendered = copy.deepcopy(message)
        if not metadata:
            rendered.pop("metadata", None)
        ts = message["ts"]
        replies = self.thread(channel_id, ts)[1:]
        if replies:
            users = list(dict.fromkeys(str(m.get("user", "")) for m in replies))
            rendered.update(
                thread_ts=ts,
                reply_count=len(replies),
                reply_users=users[:5],
                reply_users_count=len(users),
                latest_reply=replies[-1]["ts"],
                is_locked=False,
                subscribed=False,
            )
        return rendered

    def is_from_bot(self, message: Message) -> bool:
        """Whether the app's bot posted the message."""
        return message.get("bot_id") == self.bot_id or message.get("user") == self.bot_user_id

    def permalink(self, base_url: str, channel_id: str, ts: str) -> str:
        """Slack's permalink shape, with thread_ts/cid for replies in a thread."""
        link = f"{base_url}/archives/{channel_id}/p{ts.replace('.', '')}"
        thread_ts = self.thread_root(channel_id, ts)
        if thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel_id}"
        return link
