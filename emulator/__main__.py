"""Run the emulator standalone: `python -m emulator --port 3001 --events-url URL`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from emulator.config import EmulatorConfig
from emulator.server import SlackEmulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: the control API lets anyone who reaches "
        "it act as any user)",
    )
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument(
        "--events-url",
        default=None,
        help="where to POST events and slash commands (omit for Socket Mode only)",
    )
    parser.add_argument(
        "--signing-secret", default=None, help="default: a random one, printed at start"
    )
    parser.add_argument("--bot-token", default=None, help="default: a random one, printed")
    parser.add_argument("--app-token", default=None, help="default: a random one, printed")
    parser.add_argument(
        "--retry-delays",
        default="1,60,300",
        help="comma-separated seconds before retries 1..3 of a failed delivery",
    )
    parser.add_argument("--ack-timeout", type=float, default=3.0)
    parser.add_argument("--no-demo", action="store_true", help="start with an empty workspace")
    parser.add_argument(
        "--oauth-redirect-url",
        default=None,
        help="the app's OAuth redirect URL, e.g. http://127.0.0.1:3000/slack/oauth_redirect",
    )
    parser.add_argument(
        "--token-rotation", action="store_true", help="issue expiring tokens and refresh tokens"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig the command line asks for."""
    delays = tuple(float(d) for d in args.retry_delays.split(",") if d.strip())
    given = {
        name: value
        for name, value in (
            ("signing_secret", args.signing_secret),
            ("bot_token", args.bot_token),
            ("app_token", args.app_token),
        )
        if value
    }
    return EmulatorConfig(
        **given,
        events_url=args.events_url,
        host=args.host,
        port=args.port,
        retry_delays=delays,
        ack_timeout=args.ack_timeout,
        seed_demo=not args.no_demo,
        oauth_redirect_url=args.oauth_redirect_url,
        token_rotation=args.token_rotation,
    )


async def serve(config: EmulatorConfig) -> None:
    """Run until cancelled, printing where everything is."""
    emulator = SlackEmulator(config)
    await emulator.start()
    print(
        f"Slack emulator at {emulator.url}\n"
        f"  Web API (slack_sdk base_url): {emulator.api_url}\n"
        f"  events to: {config.events_url or '(Socket Mode only)'}\n"
        f"  bot token {config.bot_token}  app token {config.app_token}\n"
        f"  signing secret {config.signing_secret}\n"
        f"  OAuth client id {config.client_id}  secret {config.client_secret}"
        f"{'  (token rotation on)' if config.token_rotation else ''}\n"
        f"  try: curl {emulator.url}/",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config_from(args)))


if __name__ == "__main__":
    main()
