"""The Slack edge: Bolt listeners grouped by Slack surface, registered by `register(app, ...)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from app.services import Services
from handlers import ignored, messages, middleware


def register(app: AsyncApp, services: Services) -> None:
    """Attach every listener and middleware of the Slack edge to `app`."""
    middleware.register(app, services)
    messages.register(app, services)
    ignored.register(app)
