"""Local mode: with no Slack credentials, Lore talks to the built-in Slack emulator.

The emulator also serves the playground page (a Slack-like workspace in the browser, with Lore's
view of its memory beside it); Lore's own `/` redirects there. The emulator's workspace is kept
in `$LORE_DATA_DIR/emulator.json`; on the first run (no such file) it is seeded with a small
demo company whose history is delivered to Lore like any Slack message, so Lore archives it.

The emulator signs its deliveries with a secret made at random at every start and known only
to this process, and Lore listens on 127.0.0.1 unless LORE_HOST says otherwise, so nobody else
on the network can post events into the workspace.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from urllib.parse import urlsplit

from app.api import enable_api
from app.logging_setup import mask_values
from app.main import Lore, SlackCredentials
from emulator import EmulatorConfig, SlackEmulator
from emulator.playground import demo

log = logging.getLogger("lore")

STATE_FILE = "emulator.json"

HOW_TO = """
No Slack credentials are set, so Lore runs against its built-in Slack emulator at {emu}.

  Playground: open {lore}/ in a browser (it redirects to the emulator's page, {emu}/).
  {workspace}

Scripts can act as a person through the emulator's control API, e.g. post as alice in #general:

  curl -s {emu}/_emulator/messages -H 'content-type: application/json' \\
    -d '{{"user":"U0ALICE","channel":"C0GENERAL","text":"<@U0LORE> who owns deploys?"}}'

Then read the thread back (use the "ts" the first call printed):

  curl -s {emu}/_emulator/threads/C0GENERAL/<ts>
"""


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a bind address or name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_origins(url: str) -> frozenset[str]:
    """The origins a browser may show the emulator's page under (127.0.0.1 and localhost)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return frozenset({f"{parts.scheme}://127.0.0.1{port}", f"{parts.scheme}://localhost{port}"})


async def start_local_slack(lore: Lore) -> SlackEmulator:
    """Start the emulator pointed at Lore's /slack/events and connect Lore's Bolt app to it.

    Also serves Lore's JSON API to the playground, loads the saved workspace or seeds the demo.
    """
    settings = lore.settings
    if not is_loopback_host(settings.bind_host):
        log.warning(
            "local mode listens on %s (LORE_HOST), not on 127.0.0.1 only: other machines can "
            "reach this Lore; unset LORE_HOST to keep it to this machine",
            settings.bind_host,
        )
    signing_secret = secrets.token_hex(32)
    mask_values([signing_secret])
    config = EmulatorConfig(
        signing_secret=signing_secret,
        events_url=f"{lore.url}/slack/events",
        host="127.0.0.1",
        port=settings.lore_emulator_port,
    )
    emulator = SlackEmulator(config)
    state_file = settings.lore_data_dir / STATE_FILE
    restored = emulator.playground.keep_state_in(state_file)
    await emulator.start()
    emulator.playground.agent_api_url = f"{lore.url}/api"
    enable_api(lore, playground_url=f"{emulator.url}/", allowed_origins=page_origins(emulator.url))
    await lore.connect_slack(
        SlackCredentials(
            bot_token=config.bot_token,
            signing_secret=config.signing_secret,
            api_url=emulator.api_url,
        )
    )
    if restored:
        workspace = f"Workspace loaded from {state_file} (delete it to start again from the demo)."
    else:
        count = await demo.seed(emulator)
        await emulator.playground.save()
        workspace = (
            f"First run: seeded the Kestrel Labs demo workspace ({count} messages, delivered "
            f"to Lore to archive); it is kept in {state_file}."
        )
    log.info(HOW_TO.format(emu=emulator.url, lore=lore.url, workspace=workspace))
    return emulator
