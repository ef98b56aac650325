"""Local mode: with no Slack credentials, Lore talks to the built-in Slack emulator."""

from __future__ import annotations

import logging

from app.main import Lore, SlackCredentials
from emulator import EmulatorConfig, SlackEmulator

log = logging.getLogger("lore")

HOW_TO = """
No Slack credentials are set, so Lore runs against its built-in Slack emulator at {emu}.
Post a message as alice in #general, mentioning Lore:

  curl -s {emu}/_emulator/messages -H 'content-type: application/json' \\
    -d '{{"user":"U0ALICE","channel":"C0GENERAL","text":"<@U0LORE> who owns deploys?"}}'

Then read the thread back (use the "ts" the first call printed):

  curl -s {emu}/_emulator/threads/C0GENERAL/<ts>
"""


async def start_local_slack(lore: Lore) -> SlackEmulator:
    """Start the emulator pointed at Lore's /slack/events and connect Lore's Bolt app to it."""
    config = EmulatorConfig(
        events_url=f"{lore.url}/slack/events",
        host="127.0.0.1",
        port=lore.settings.lore_emulator_port,
    )
    emulator = SlackEmulator(config)
    await emulator.start()
    await lore.connect_slack(
        SlackCredentials(
            bot_token=config.bot_token,
            signing_secret=config.signing_secret,
            api_url=emulator.api_url,
        )
    )
    log.info(HOW_TO.format(emu=emulator.url))
    return emulator
