"""The Slack edge: Bolt listeners grouped by Slack surface, registered by `register(app, ...)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from app.services import Services
from handlers import (
    app_home,
    backfill,
    completion,
    feedback,
    ignored,
    messages,
    middleware,
    recall,
    uninstall,
)
from handlers.membership import Memberships
from handlers.users import SlackUsers


def register(app: AsyncApp, services: Services) -> None:
    """Attach every listener and middleware of the Slack edge to `app`."""
    memberships = Memberships()
    users = SlackUsers()  # one users.info cache for names and admin checks
    middleware.register(app, services)
    completion.register(app, services)
    messages.register(app, services, memberships, users)
    recall.register(app, services, memberships)
    uninstall.register(app, services)
    feedback.register(app, services)
    backfill.register(app, services, users)
    app_home.register(app, services, users)
    ignored.register(app)
