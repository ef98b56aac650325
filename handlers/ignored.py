"""Subscribed events Lore does not act on yet still get a 200, so Slack does not retry them.

Registered last: `message` here catches the subtypes no earlier listener acts on (joins,
topic changes, bot_message and the like).
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

ACKNOWLEDGED_ONLY = (
    "message",
    "channel_rename",
    "assistant_thread_started",
    "assistant_thread_context_changed",
)


def register(app: AsyncApp) -> None:
    for event_type in ACKNOWLEDGED_ONLY:

        @app.event(event_type)
        async def acknowledge() -> None:
            """Bolt acknowledges the event; there is nothing more to do."""
