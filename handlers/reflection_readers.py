"""Who reads the conversations reflection reads: whether outsiders do, asked of Slack with the
workspace's client through the listeners' own access facts (and their caches)."""

from __future__ import annotations

from app.reflection import Outsiders
from handlers.access_facts import AccessFacts
from handlers.intake_replay import Clients


def outsiders_of(access: AccessFacts, clients: Clients) -> Outsiders:
    """`Reflection.outsiders` for the workspaces `clients` serves; a workspace it does not
    serve cannot be asked about (LookupError), so its conversations wait."""

    async def outsiders(team_id: str, channel_id: str) -> bool:
        client = await clients(team_id)
        if client is None:
            raise LookupError(f"no bot token for {team_id}")
        return await access.has_outsiders(client, team_id, channel_id, bot_user_id=None)

    return outsiders
