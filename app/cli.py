"""`python -m app` / `lore`: serve (default), import-export, search and memory commands.

`serve`, `import-export` and `search` open the stores as `serve` does (`open_stores`); with the
embedded Chroma store they hold `$LORE_DATA_DIR/chroma.lock`, so the CLI refuses to run beside a
server on the same data dir (and the other way round) instead of corrupting its index.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from app import search_cli
from app.agent.access import Access
from app.api import enable_api
from app.backfill import cli as backfill_cli
from app.importer.convert import workspace_host
from app.importer.export import ExportError, open_export
from app.importer.run import import_export
from app.logging_setup import configure_logging
from app.main import (
    Lore,
    UnverifiedEvents,
    credentials_from,
    open_database,
    open_stores,
    start_lore,
)
from app.settings import Settings, SettingsError, load_settings
from app.store_lock import StoreBusy, embedded_store_lock, unshared_vectors
from memory.blocks import MemoryBlocks
from memory.intake import IntakeBusy
from memory.locks import LocalLocks

log = logging.getLogger("lore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lore",
        description="Lore, the workspace memory for Slack",
        epilog="With the embedded store (no CHROMA_URL), `serve`, `import-export` and `search` "
        "never run at once on one LORE_DATA_DIR: the second one stops with exit status 3 "
        "(two processes must never open one Chroma directory). Stop the server first, or use "
        "a Chroma server.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the Slack app (default)")
    memory = commands.add_parser("memory", help="show a workspace's memory blocks")
    memory.add_argument("action", choices=["show", "history"])
    memory.add_argument("--team", required=True)
    memory.add_argument("--label", default="org", help="block for `history` (default org)")
    _add_import_parser(commands)
    _add_search_parser(commands)
    backfill_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "search" and (args.query is None) == (args.queries is None):
        parser.error("search needs either QUERY or --queries FILE")
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"lore: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.lore_log_level, settings.lore_log_format, settings.secret_values())
    if args.command == "memory":
        return asyncio.run(_memory(settings, args.action, args.team, args.label))
    command = args.command or "serve"
    if command == "serve" and (warning := unshared_vectors(settings)):
        log.warning(warning)
    try:
        with embedded_store_lock(settings, command):
            if command == "import-export":
                return asyncio.run(_import(settings, args.path, args.team, args.domain))
            if command == "search":
                return asyncio.run(_search(settings, args))
            if command == "backfill":
                return asyncio.run(_backfill(settings, args))
            return asyncio.run(_serve(settings))
    except (StoreBusy, IntakeBusy) as error:
        print(f"lore: {error}", file=sys.stderr)
        return 3


def _add_import_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import-export",
        help="import a Slack workspace export (ZIP or folder) into the archive",
        description="Import a Slack workspace export. Idempotent: messages already archived "
        "with the same content are left alone. Exit status 1 if some files were malformed "
        "(they are named and skipped; the rest is imported).",
    )
    parser.add_argument("path", type=Path, help="the export: a .zip file or its unpacked folder")
    parser.add_argument("--team", required=True, help="workspace (team) id to import into")
    parser.add_argument(
        "--domain",
        help="workspace domain for permalinks: `acme` or `acme.slack.com` "
        "(default: the team id lower-cased, e.g. t024be7ld.slack.com)",
    )


def _add_search_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "search",
        help="search a workspace's archive (admin view: every channel)",
        description='One QUERY, or --queries FILE of JSON lines {"id", "query"} ("-" = stdin) '
        'answered as JSON lines {"id", "results": [{"channel", "ts", "thread_ts", "user", '
        '"text", "permalink", "score"}]}.',
    )
    parser.add_argument("query", nargs="?", help="what to look for")
    parser.add_argument("--team", required=True, help="workspace (team) id")
    parser.add_argument("--k", type=_result_count, default=10, help="results per query (10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.add_argument("--queries", metavar="FILE", help="JSON-lines file of queries")


def _result_count(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return number


async def _import(settings: Settings, path: Path, team: str, domain: str | None) -> int:
    try:
        with open_export(path, settings.lore_import_max_day_file_bytes) as export:
            stores = await open_stores(settings)
            try:
                report = await import_export(
                    export, stores.archive, team, workspace_host(team, domain)
                )
            finally:
                await stores.close()
    except ExportError as error:
        print(f"lore: import-export: {error}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 1 if report.problems else 0


async def _search(settings: Settings, args: argparse.Namespace) -> int:
    items = None
    if args.queries is not None:
        try:
            items = search_cli.load_queries(args.queries)
        except OSError as error:
            print(f"lore: search: cannot read {args.queries}: {error}", file=sys.stderr)
            return 2
    stores = await open_stores(settings)
    try:
        if items is None:
            return await search_cli.search_one(
                stores.archive, args.team, args.query, args.k, args.json, sys.stdout
            )
        return await search_cli.search_file(
            stores.archive, args.team, items, args.k, sys.stdout, sys.stderr
        )
    finally:
        await stores.close()


async def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    stores = await open_stores(settings)
    try:
        return await backfill_cli.run(settings, stores, args)
    finally:
        await stores.close()


async def _serve(settings: Settings) -> int:
    credentials = credentials_from(settings)
    try:
        lore = await start_lore(settings, credentials)
    except UnverifiedEvents as error:
        print(f"lore: {error}", file=sys.stderr)
        return 2
    enable_api(lore)
    emulator = None
    if credentials is None:
        from app.local import start_local_slack

        emulator = await start_local_slack(lore)
    # The libraries loaded at start-up leave a large heap that never becomes garbage; a full
    # collection scanning it froze the event loop for ~190 ms under load (bench/ack_latency.py).
    # Frozen here, in the serving process only: a process that starts and stops Lores (the
    # tests) would never collect a stopped one's cycles.
    gc.freeze()
    log.info(
        "Lore is listening on %s (events at /slack/events, health at /healthz)%s%s",
        lore.url,
        " in Socket Mode" if settings.socket_mode else "",
        " in retrieval-only mode (no ANTHROPIC_API_KEY)"
        if lore.services.agent.retrieval_only
        else "",
    )
    await _wait_for_signal()
    log.info(
        "shutting down: finishing running and queued turns for up to %gs (LORE_SHUTDOWN_GRACE; "
        "a second signal hands them back at once)",
        settings.lore_shutdown_grace,
    )
    _on_signal(lambda: _hurry(lore))
    await lore.stop()
    if emulator is not None:
        await emulator.stop()
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    _on_signal(stop.set)
    await stop.wait()


def _on_signal(handler: Callable[[], None]) -> None:
    """Call `handler` on SIGINT or SIGTERM (replacing the previous handler)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handler)


def _hurry(lore: Lore) -> None:
    log.warning("second signal: handing back the turns still running or queued now")
    lore.hurry()


async def _memory(settings: Settings, action: str, team: str, label: str) -> int:
    """Reads the SQL store only, so it is safe beside a running server."""
    engine = await open_database(settings)
    blocks = MemoryBlocks(engine, LocalLocks(), settings.lore_memory_block_limit)
    scope = Access.for_operator(team).memory
    try:
        if action == "show":
            for block in await blocks.current(team, scope):
                size = f"{len(block.value)}/{block.char_limit}"
                print(f"== {block.label} (version {block.version}, {size} characters)")
                print(block.value)
        else:
            for block in await blocks.history(team, label, scope):
                when = f"{block.created_at:%Y-%m-%d %H:%M}"
                origin = block.conversation_id or "-"
                print(f"== v{block.version} {when} {block.operation} from {origin}")
                print(block.value)
    finally:
        await engine.dispose()
    return 0
