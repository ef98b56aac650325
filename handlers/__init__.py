"""The Slack edge: Bolt listeners grouped by Slack surface, registered by `register(app, ...)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from app.services import Services
from handlers import (
    app_home,
    backfill,
    feedback,
    ignored,
    messages,
    middleware,
    recall,
    uninstall,
)
from handlers.membership import Memberships


def register(app: AsyncApp, services: Services) -> None:
    """Attach every listener and middleware of the Slack edge to `app`."""
    memberships = Memberships()
    middleware.register(app, services)
    messages.register(app, services, memberships)
    recall.register(app, services, memberships)
    uninstall.register(app, services)
    feedback.register(app, services)
    backfill.register(app, services)
    app_home.register(app, services)
    ignored.register(app)
