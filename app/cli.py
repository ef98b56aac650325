"""`python -m app` / `lore`: serve (default) and memory commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from app.main import credentials_from, open_database, start_lore
from app.settings import Settings, SettingsError, load_settings
from memory.blocks import MemoryBlocks
from memory.locks import LocalLocks

log = logging.getLogger("lore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lore", description="Lore, the workspace memory for Slack"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the Slack app (default)")
    memory = commands.add_parser("memory", help="show a workspace's memory blocks")
    memory.add_argument("action", choices=["show", "history"])
    memory.add_argument("--team", required=True)
    memory.add_argument("--label", default="org", help="block for `history` (default org)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"lore: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.lore_log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "memory":
        return asyncio.run(_memory(settings, args.action, args.team, args.label))
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    credentials = credentials_from(settings)
    lore = await start_lore(settings, credentials)
    emulator = None
    if credentials is None:
        from app.local import start_local_slack

        emulator = await start_local_slack(lore)
    log.info(
        "Lore is listening on %s (events at /slack/events, health at /healthz)%s%s",
        lore.url,
        " in Socket Mode" if settings.socket_mode else "",
        " in retrieval-only mode (no ANTHROPIC_API_KEY)"
        if lore.services.agent.retrieval_only
        else "",
    )
    await _wait_for_signal()
    log.info("shutting down: finishing queued turns")
    await lore.stop()
    if emulator is not None:
        await emulator.stop()
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def _memory(settings: Settings, action: str, team: str, label: str) -> int:
    """Reads the SQL store only, so it is safe beside a running server."""
    engine = await open_database(settings)
    blocks = MemoryBlocks(engine, LocalLocks(), settings.lore_memory_block_limit)
    try:
        if action == "show":
            for block in await blocks.current(team):
                size = f"{len(block.value)}/{block.char_limit}"
                print(f"== {block.label} (version {block.version}, {size} characters)")
                print(block.value)
        else:
            for block in await blocks.history(team, label):
                when = f"{block.created_at:%Y-%m-%d %H:%M}"
                origin = block.conversation_id or "-"
                print(f"== v{block.version} {when} {block.operation} from {origin}")
                print(block.value)
    finally:
        await engine.dispose()
    return 0
