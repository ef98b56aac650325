"""A small fictional company's Slack history, so a first local run is not empty.

Kestrel Labs makes shipment-tracking software. Five people, six channels (one private), a few
dozen threads about deploys, on-call, customers and company life over the last six weeks. The
messages are posted as the people and delivered to the app like any other message, so the app
archives them through the real path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emulator.ids import format_ts

if TYPE_CHECKING:
    from emulator.server import SlackEmulator

ALICE, BOB, CAROL, DAVE, ERIN = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN"
EVERYONE = (ALICE, BOB, CAROL, DAVE, ERIN)

# (id, name, real name, title, admin, owner)
USERS = (
    (ALICE, "alice", "Alice Anders", "CEO", True, True),
    (BOB, "bob", "Bob Brown", "Backend engineer", False, False),
    (CAROL, "carol", "Carol Chen", "SRE lead", True, False),
    (DAVE, "dave", "Dave Diaz", "Customer success", False, False),
    (ERIN, "erin", "Erin Evans", "Product manager", False, False),
)

# (id, name, private, members, purpose)
CHANNELS = (
    ("C0GENERAL", "general", False, EVERYONE, "Company-wide announcements and work-based matters"),
    ("C0DEPLOYS", "deploys", False, EVERYONE, "Releases, rollbacks and the deploy pipeline"),
    ("C0ONCALL", "oncall", False, EVERYONE, "Incidents, pages and the on-call rotation"),
    ("C0CUSTOMERS", "customers", False, EVERYONE, "Customer questions, renewals, escalations"),
    ("C0RANDOM", "random", False, EVERYONE, "Non-work banter and water cooler conversation"),
    ("C0LEADS", "leadership", True, (ALICE, CAROL, ERIN), "Leadership team (private)"),
)


@dataclass(frozen=True)
class DemoThread:
    channel: str
    days_ago: int
    at: str  # HH:MM UTC on that day
    messages: tuple[tuple[str, str], ...]  # (user, text): the parent, then its replies


T = DemoThread
# fmt: off
THREADS: tuple[DemoThread, ...] = (
    T("C0GENERAL", 41, "09:05", (
        (ALICE, "Welcome to the Kestrel Labs Slack! Announcements here, releases in <#C0DEPLOYS>, "
                "incidents in <#C0ONCALL>, customer escalations in <#C0CUSTOMERS>."),
        (ERIN, "The handbook lives at wiki/handbook. Please read the on-call and deploy pages in "
               "your first week."),
        (BOB, "Thanks! Is there a glossary? I keep hearing 'lanes' and 'legs'."),
        (ERIN, "A leg is one hop of a shipment; a lane is a recurring origin-destination pair. "
               "Glossary is wiki/handbook/glossary."),
    )),
    T("C0GENERAL", 38, "15:30", (
        (ERIN, "Reminder: all-hands is every other Thursday at 16:00 UTC. The agenda doc is pinned"
               " in <#C0GENERAL>."),
        (CAROL, "Can we record it for the people in APAC?"),
        (ERIN, "Yes, recordings go to the 'All-hands' folder in Google Drive within a day."),
    )),
    T("C0GENERAL", 33, "10:12", (
        (ALICE, "Q3 priorities: 1) route optimisation v2, 2) the SOC 2 Type II audit, 3) p95 API "
                "latency under 300 ms."),
        (BOB, "Latency work is tracked in epic KES-412."),
        (DAVE, "Customers keep asking when route optimisation v2 ships. What can I tell them?"),
        (ALICE, "Say 'early September' and nothing firmer than that."),
    )),
    T("C0GENERAL", 27, "11:47", (
        (ERIN, "Expense policy: anything over $500 needs Alice's approval before you buy it. Use "
               "the Ramp card, not personal cards."),
        (BOB, "Does that include conference tickets?"),
        (ERIN, "Yes, conference tickets count too."),
    )),
    T("C0GENERAL", 19, "14:03", (
        (BOB, "Who owns the status page? It still shows last week's incident."),
        (CAROL, "I do. Fixed. The status page is on Statuspage; the login is in the 1Password "
                "vault 'Ops'."),
    )),
    T("C0GENERAL", 6, "09:40", (
        (DAVE, "Frank joins support next Monday. Can someone set up a Kestrel sandbox account for "
               "him?"),
        (CAROL, "Sandbox accounts are made with `kestrel-admin create-sandbox --email`. I'll do it"
                " today."),
        (DAVE, "Thank you <@U0CAROL>!"),
    )),
    T("C0DEPLOYS", 40, "13:20", (
        (CAROL, "Deploy policy reminder: no production deploys on Fridays after 14:00 UTC, and "
                "none during the holiday freeze (Dec 18 to Jan 3)."),
        (BOB, "Does the freeze cover config-only changes?"),
        (CAROL, "Config changes too, unless it is an incident fix approved by the on-call lead."),
    )),
    T("C0DEPLOYS", 36, "10:02", (
        (BOB, "Deploying api v2.41.0 to production: adds the batch geocoding endpoint."),
        (CAROL, "Canary at 5% looks healthy, error rate 0.02%."),
        (BOB, "Rolled out to 100%. Done."),
    )),
    T("C0DEPLOYS", 31, "16:15", (
        (BOB, "The web v1.88 deploy failed: the migration timed out on the shipments table."),
        (CAROL, "Migrations on big tables must use the online migration tool (gh-ost), never a "
                "plain ALTER TABLE."),
        (BOB, "Re-ran it with gh-ost. It took 41 minutes and everything is fine."),
    )),
    T("C0DEPLOYS", 26, "09:55", (
        (ERIN, "Who can approve production deploys now that Priyanka has left?"),
        (ALICE, "Carol and Bob are the approvers. Anyone else needs one of them to sign off on the"
                " deploy PR."),
    )),
    T("C0DEPLOYS", 22, "11:30", (
        (CAROL, "The deploy pipeline has moved from Jenkins to GitHub Actions. The workflow is "
                "deploy.yml; staging deploys automatically on every merge to main."),
        (BOB, "And production?"),
        (CAROL, "Production is a manual 'Run workflow' with the release tag. Carol owns the "
                "pipeline; ping me if it breaks."),
    )),
    T("C0DEPLOYS", 17, "15:05", (
        (BOB, "How to roll back: `kestrel-deploy rollback --to <previous tag>`. It takes about 4 "
              "minutes."),
        (CAROL, "And always post in <#C0ONCALL> when you roll back production."),
    )),
    T("C0DEPLOYS", 12, "08:20", (
        (BOB, "Staging is broken again: the nightly reset at 02:00 UTC wiped the test fixtures."),
        (CAROL, "Fixtures come back with the `seed-staging` job. I re-ran it; staging is fine."),
    )),
    T("C0DEPLOYS", 8, "17:10", (
        (ERIN, "Release notes go out every Tuesday. PMs write them from the merged PRs labelled "
               "`user-facing`."),
        (DAVE, "Could customer success get them a day early, on Mondays?"),
        (ERIN, "Yes, I'll post the draft in <#C0CUSTOMERS> every Monday."),
    )),
    T("C0DEPLOYS", 3, "10:45", (
        (BOB, "Deploying api v2.44.0: faster label printing and the new rate limiter."),
        (CAROL, "Canary is clean. Go ahead."),
        (BOB, "Done, 100% rolled out."),
    )),
    T("C0ONCALL", 39, "10:00", (
        (CAROL, "On-call rotation: weekly, handover on Mondays at 10:00 UTC. The schedule is "
                "'kestrel-core' in PagerDuty."),
        (BOB, "Who is secondary this week?"),
        (CAROL, "Erin is secondary and Bob is primary."),
    )),
    T("C0ONCALL", 29, "09:14", (
        (BOB, "Incident: API 5xx spike since 09:12 UTC. The Postgres primary ran out of "
              "connections."),
        (CAROL, "PgBouncer's pool size was 50; I raised it to 200. Errors back to normal at "
                "09:31."),
        (BOB, "Postmortem: wiki/postmortems/pg-connections. Action item: alert when pool usage "
              "goes over 80%."),
    )),
    T("C0ONCALL", 24, "14:40", (
        (CAROL, "Postgres failover runbook: wiki/runbooks/pg-failover. Promote the replica with "
                "`patronictl failover`, then point the DNS record db-primary.internal at it."),
        (BOB, "Tested it on staging yesterday: 47 seconds of downtime."),
    )),
    T("C0ONCALL", 20, "03:05", (
        (BOB, "Paged at 03:00 for disk usage on worker-7: the logs were not being rotated."),
        (CAROL, "logrotate was missing from the new worker image. Fixed in image v34."),
    )),
    T("C0ONCALL", 15, "11:00", (
        (ERIN, "Escalation policy: if the primary does not acknowledge a page within 10 minutes, "
               "PagerDuty pages the secondary, then the on-call lead (Carol)."),
    )),
    T("C0ONCALL", 10, "16:20", (
        (CAROL, "The Redis cache cluster gets upgraded to 7.2 on Wednesday at 07:00 UTC. Expect "
                "about 2 minutes of higher latency."),
        (BOB, "I'll keep an eye on the dashboards."),
    )),
    T("C0ONCALL", 5, "12:35", (
        (BOB, "MapQuest is rate-limiting our geocoding at 50 requests per second. We can fall back"
              " to HERE Maps behind the flag `geocode_fallback`."),
        (CAROL, "Flip the flag in LaunchDarkly if MapQuest returns 429 for more than 5 minutes."),
    )),
    T("C0CUSTOMERS", 37, "13:10", (
        (DAVE, "Acme Freight's renewal is due March 15. Their contact is Priya Natarajan (VP Ops)."
               " They want SSO before they renew."),
        (ALICE, "SAML SSO ships in the April release; you can promise that."),
        (DAVE, "Told them. They will renew for two years."),
    )),
    T("C0CUSTOMERS", 30, "10:25", (
        (DAVE, "Globex Logistics says they have had no tracking webhooks since Tuesday."),
        (BOB, "Their endpoint returns 410, so we disabled it after 100 failures. They need to "
              "re-enable it under Settings > Webhooks."),
        (DAVE, "Passed on; it works again."),
    )),
    T("C0CUSTOMERS", 23, "15:50", (
        (DAVE, "Initech asked for an export of all their 2023 shipments."),
        (CAROL, "Exports over a million rows go through the async export job. It emails a signed "
                "S3 link that is valid for 7 days."),
    )),
    T("C0CUSTOMERS", 16, "09:30", (
        (ERIN, "Customer feedback summary: the top request is bulk editing of routes; second is a "
               "dark mode for the dashboard."),
        (DAVE, "Bulk editing came up in 9 of my last 12 calls."),
    )),
    T("C0CUSTOMERS", 11, "14:15", (
        (DAVE, "Umbrella Corp wants a 99.95% uptime SLA. Our standard is 99.9%."),
        (ALICE, "99.95% only on the Enterprise Plus plan. Loop me in on the pricing."),
    )),
    T("C0CUSTOMERS", 4, "11:05", (
        (DAVE, "Reminder: customer escalations go through Zendesk. Tag anything that blocks "
               "shipments `escalation-p1`; it pages the on-call engineer."),
    )),
    T("C0RANDOM", 21, "12:30", (
        (BOB, "Lunch and learn on Friday: Carol explains how our deploy pipeline works."),
        (ERIN, "Pizza is ordered."),
    )),
    T("C0RANDOM", 9, "16:45", (
        (ERIN, "Who left a sourdough starter in the office fridge? It is labelled 'Clint "
               "Yeastwood'."),
        (CAROL, "That's mine. Please feed him if you are in on Saturday."),
    )),
    T("C0LEADS", 34, "17:00", (
        (ALICE, "Confidential: we plan an 8% price increase for new customers from October 1. "
                "Please don't share it outside this channel yet."),
        (ERIN, "Do existing customers keep their price until renewal?"),
        (ALICE, "Yes, they keep it until their next renewal."),
    )),
    T("C0LEADS", 18, "08:50", (
        (ALICE, "Hiring freeze on non-engineering roles until the Series B closes, expected at the"
                " end of Q3."),
        (CAROL, "Does Frank's support role still go ahead?"),
        (ALICE, "Yes, his offer was signed before the freeze."),
    )),
    T("C0LEADS", 7, "13:25", (
        (ERIN, "The board meeting moved to September 12. The deck is due September 5."),
        (ALICE, "I'll draft the metrics section this week."),
    )),
)
# fmt: on
del T

REPLY_GAPS_MINUTES = (4, 9, 17, 26, 38, 51)


def message_count() -> int:
    """How many messages `seed` posts."""
    return sum(len(thread.messages) for thread in THREADS)


def add_people_and_channels(emulator: SlackEmulator) -> None:
    """The company's people (each with a DM with the app) and channels."""
    for user_id, name, real_name, _title, admin, owner in USERS:
        emulator.add_user(user_id, name, real_name=real_name, is_admin=admin, is_owner=owner)
    for channel_id, name, private, members, purpose in CHANNELS:
        channel = emulator.add_channel(channel_id, name, private, members=list(members))
        channel.purpose = purpose
        channel.created = int(time.time()) - 60 * 86400


async def seed(emulator: SlackEmulator, now: float | None = None) -> int:
    """Add the company and post its history, delivered to the app; the number of messages."""
    add_people_and_channels(emulator)
    now = time.time() if now is None else now
    today = int(now // 86400) * 86400
    posted = 0
    for number, thread in enumerate(THREADS):
        hours, minutes = (int(part) for part in thread.at.split(":"))
        start = today - thread.days_ago * 86400 + hours * 3600 + minutes * 60
        micros = start * 1_000_000 + number  # distinct even for threads started the same minute
        parent_ts: str | None = None
        for index, (user, text) in enumerate(thread.messages):
            offset = 60 * REPLY_GAPS_MINUTES[index - 1] if index else 0
            ts = format_ts(micros + offset * 1_000_000 + index)
            result = await emulator.post_message(user, thread.channel, text, parent_ts, ts=ts)
            parent_ts = parent_ts or result["ts"]
            posted += 1
    return posted
