"""The Slack edge: Bolt listeners grouped by Slack surface, registered by `register(app, ...)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from app.services import Services
from handlers import (
    app_home,
    backfill,
    channel_events,
    completion,
    feedback,
    ignored,
    intake,
    messages,
    middleware,
    own_events,
    people_events,
    recall,
    uninstall,
)
from handlers.access_facts import AccessFacts
from handlers.channels import ChannelTypes
from handlers.membership import Memberships
from handlers.people import PeopleDirectory
from handlers.users import SlackUsers


def register(
    app: AsyncApp, services: Services, authorised: intake.Authorised | None = None
) -> AccessFacts:
    """Attach every listener and middleware of the Slack edge to `app`; the access facts they
    share, for work outside Bolt that asks the same questions of Slack (reflection).
    `authorised` hears of each workspace Bolt authorised (`handlers.early_ack`)."""
    people = PeopleDirectory(lambda job: services.background.spawn(job, name="people-refresh"))
    users = SlackUsers(people)  # names, admin checks and standing: the directory, else users.info
    channel_types = ChannelTypes()  # one per-workspace channel cache; channel events forget
    memberships = Memberships()
    access = AccessFacts(channel_types, memberships, users, people)
    own_events.register(app)  # in place of Bolt's self-event rule, which drops deletions too
    intake.register(app, services, authorised)  # before de-duplication: see handlers.intake
    middleware.register(app, services)
    completion.register(app, services)
    # Bolt tries listeners in registration order, each costing a matcher call: messages first
    messages.register(app, services, access, users)
    channel_events.register(app, services, channel_types, memberships)
    people_events.register(app, people, channel_types)
    recall.register(app, services, access, users)
    uninstall.register(app, services, people.forget_team)
    feedback.register(app, services)
    backfill.register(app, services, users, channel_types)
    app_home.register(app, services, access)
    ignored.register(app)  # last: message subtypes no listener above acts on
    return access
