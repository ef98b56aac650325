"""`python -m app backfill --team T [--channel C]`: the backfill in the foreground, with a bar."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.backfill.service import Backfill, BackfillBusy
from app.importer.progress import Progress
from app.main import Stores, make_backfill, oauth_credentials_from
from app.oauth import connect_oauth
from app.settings import Settings
from handlers.slack_history import SlackHistory


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "backfill",
        help="read channels' history and threads into the archive (resumable)",
        description="Read the history and thread replies of one channel, or of every channel "
        "the bot is a member of, into the archive, paced by LORE_BACKFILL_*. Resumes where an "
        "earlier backfill of a channel stopped; a channel already done is left alone unless "
        "--again. Exit status 1 if a channel could not be finished.",
    )
    parser.add_argument("--team", required=True, help="workspace (team) id")
    parser.add_argument("--channel", help="one channel id (default: every channel Lore is in)")
    parser.add_argument(
        "--again", action="store_true", help="read channels already done again from the newest"
    )


async def run(settings: Settings, stores: Stores, args: argparse.Namespace) -> int:
    """The command itself; the caller opens and closes the stores."""
    token = await _bot_token(settings, stores, args.team)
    if token is None:
        print(
            f"lore: backfill: no bot token for {args.team} (set SLACK_BOT_TOKEN)", file=sys.stderr
        )
        return 2
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url)
    try:
        team_id = (await client.auth_test())["team_id"]
    except SlackApiError as error:
        print(f"lore: backfill: auth.test failed: {error.response.get('error')}", file=sys.stderr)
        return 2
    if team_id != args.team:
        print(f"lore: backfill: the bot token is for {team_id}, not {args.team}", file=sys.stderr)
        return 2
    reader = SlackHistory(client, team_id)
    channels = [args.channel] if args.channel else await reader.member_channels()
    return await _run(make_backfill(settings, stores), reader, channels, args.again, sys.stdout)


async def _run(
    backfill: Backfill, reader: SlackHistory, channels: list[str], again: bool, out: TextIO
) -> int:
    progress = Progress(len(channels), f"backfilling {reader.team_id}", unit="channels")
    archived = 0

    def page_done(channel_id: str, count: int) -> None:
        nonlocal archived
        archived += count
        progress.advance(0, extra=f"{archived} messages, now {channel_id}")

    unfinished = 0
    try:
        for channel_id in channels:
            try:
                [status] = await backfill.run(reader, [channel_id], page_done, again)
            except BackfillBusy as busy:  # the channel is queued: that process reads it
                progress.advance(1, extra=f"{archived} messages")
                print(f"{channel_id}: queued ({busy})", file=out)
                unfinished += 1
                continue
            progress.advance(1, extra=f"{archived} messages")
            error = f" ({status.last_error})" if status.last_error else ""
            print(f"{channel_id}: {status.status}, {status.messages} messages{error}", file=out)
            unfinished += status.status != "done"
    finally:
        progress.close()
    return 1 if unfinished else 0


async def _bot_token(settings: Settings, stores: Stores, team_id: str) -> str | None:
    """SLACK_BOT_TOKEN, or with OAuth the workspace's installation's bot token (refreshed under
    the same lock as the server's refreshes)."""
    if settings.slack_bot_token is not None:
        return settings.slack_bot_token.get_secret_value()
    credentials = oauth_credentials_from(settings)
    if stores.installations is None or credentials is None:
        return None
    _, tokens = connect_oauth(credentials, stores.installations, stores.redis)
    return await tokens.bot_token(team_id)  # refreshed first when it is about to expire
