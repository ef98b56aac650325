"""Turns workspace changes into the Events API events Slack would send the app."""

from __future__ import annotations

from typing import Any

from emulator import payloads
from emulator.config import EmulatorConfig
from emulator.events import DeliveryRecord, EventDelivery
from emulator.workspace import Workspace


class Notifier:
    """Decides which events a change produces (and whether the app may see them)."""

    def __init__(
        self, config: EmulatorConfig, workspace: Workspace, delivery: EventDelivery
    ) -> None:
        self.config = config
        self.workspace = workspace
        self.delivery = delivery

    def _visible(self, channel_id: str, message: dict[str, Any]) -> bool:
        if not self.workspace.is_bot_member(channel_id):
            return False
        return self.config.deliver_bot_messages or not self.workspace.is_from_bot(message)

    def message_posted(self, channel_id: str, message: dict[str, Any]) -> list[DeliveryRecord]:
        """A new message: `message`, plus `app_mention` if a human mentions the bot outside a DM."""
        if not self._visible(channel_id, message):
            return []
        channel = self.workspace.channel(channel_id)
        records = [
            self.delivery.enqueue(payloads.message_event(message, channel_id, channel.channel_type))
        ]
        mentioned = payloads.mentions(str(message.get("text", "")), self.config.bot_user_id)
        if mentioned and not channel.is_im and not self.workspace.is_from_bot(message):
            records.append(self.delivery.enqueue(payloads.app_mention_event(message, channel_id)))
        return records

    def message_changed(
        self, channel_id: str, new: dict[str, Any], old: dict[str, Any]
    ) -> list[DeliveryRecord]:
        """An edited (or finished streaming) message: `message` / `message_changed`."""
        if not self._visible(channel_id, new):
            return []
        channel = self.workspace.channel(channel_id)
        event_ts = self.workspace.clock.next()
        event = payloads.message_changed_event(channel_id, channel.channel_type, new, old, event_ts)
        return [self.delivery.enqueue(event)]

    def message_deleted(self, channel_id: str, old: dict[str, Any]) -> list[DeliveryRecord]:
        """A deleted message: `message` / `message_deleted`."""
        if not self._visible(channel_id, old):
            return []
        channel = self.workspace.channel(channel_id)
        event_ts = self.workspace.clock.next()
        event = payloads.message_deleted_event(channel_id, channel.channel_type, old, event_ts)
        return [self.delivery.enqueue(event)]
