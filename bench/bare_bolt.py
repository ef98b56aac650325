"""The baseline for bench/ack_latency.py: a bare Bolt AsyncApp with a no-op message listener."""

from __future__ import annotations

import os

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient


def main() -> None:
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )
    app = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])

    @app.event("message")
    async def ignore() -> None:
        """No-op: Bolt acknowledges the event."""

    app.start(port=int(os.environ["PORT"]), path="/slack/events", host="127.0.0.1")


if __name__ == "__main__":
    main()
