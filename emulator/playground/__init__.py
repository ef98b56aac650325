"""The playground: a Slack-like page over the emulator, for people trying the app in a browser.

The page (`static/`: one HTML file, one CSS file, ES modules; no build step) is served at the
emulator's `/` to browsers. It acts through the emulator's control API like any other client
(`POST /_emulator/messages`, `/_emulator/commands`, `/_emulator/actions`) and follows changes
over server-sent events (`GET /_emulator/stream`): messages as they are posted, edited, streamed
and deleted, assistant statuses, ephemeral messages and slash-command answers.

Beside the chat it shows the app's own view when `agent_api_url` names the app's JSON API.

`keep_state_in(path)` loads the workspace saved there (users, channels, messages) and saves it
there again shortly after every change and when the emulator stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.playground import state
from emulator.playground.hub import ChangeHub
from emulator.workspace import EmulatorError

if TYPE_CHECKING:
    from emulator.server import SlackEmulator

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "playground.css": "text/css",
    "app.js": "text/javascript",
    "chat.js": "text/javascript",
    "agent.js": "text/javascript",
    "render.js": "text/javascript",
    "net.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
SAVE_SECONDS = 1.0

MESSAGE_METHODS = frozenset(
    {"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"}
)
WORKSPACE_METHODS = frozenset({"conversations.join", "conversations.open"})
WATCHED_METHODS = (
    MESSAGE_METHODS
    | WORKSPACE_METHODS
    | {
        "chat.delete",
        "chat.postEphemeral",
        "assistant.threads.setStatus",
    }
)


class Playground:
    """The page, its event stream and the saved workspace of one emulator."""

    def __init__(self, emulator: SlackEmulator) -> None:
        self.emu = emulator
        self.hub = ChangeHub()
        self.agent_api_url: str | None = None
        """The app's JSON API (e.g. http://127.0.0.1:3000/api); None hides the agent's view."""
        self.state_file: Path | None = None
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None
        self._sent_responses = 0
        self._sent_ephemerals = 0

    # serving

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/playground/{name}", self.asset),
            web.get("/_emulator/stream", self.hub.stream),
            web.get("/_emulator/playground", self.config),
            web.get("/_emulator/statuses", self.statuses),
        ]

    async def page(self, request: web.Request) -> web.StreamResponse:
        """The playground's HTML page."""
        return web.FileResponse(
            STATIC / "index.html",
            headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"},
        )

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        content_type = ASSETS.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        return web.FileResponse(
            STATIC / name, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )

    async def config(self, request: web.Request) -> web.Response:
        """What the page needs to know about this workspace and the app."""
        config = self.emu.config
        return web.json_response(
            {
                "ok": True,
                "team": {
                    "id": config.team_id,
                    "name": config.team_name,
                    "domain": config.team_domain,
                },
                "bot": {"user_id": config.bot_user_id, "bot_id": config.bot_id},
                "agent_api": self.agent_api_url,
                "emulator_url": self.emu.url,
            }
        )

    async def statuses(self, request: web.Request) -> web.Response:
        """Assistant thread statuses ("is thinking…") shown right now."""
        current = [
            {"channel": channel, "thread_ts": thread_ts, "status": status}
            for (channel, thread_ts), status in self.emu.workspace.statuses.items()
        ]
        return web.json_response({"ok": True, "statuses": current})

    # lifecycle

    def keep_state_in(self, path: Path) -> bool:
        """Load the workspace saved at `path` (True if there was one) and save it there later.

        A file that cannot be used is renamed aside (`….broken-<time>`) with a warning.
        """
        self.state_file = path
        try:
            data = state.load(path)
            if data is None:
                return False
            count = state.restore(self.emu.workspace, data)
        except state.StateError as error:
            aside = state.set_aside(path) if path.exists() else None
            log.warning("cannot load the saved workspace: %s (kept as %s)", error, aside)
            return False
        log.info("loaded the saved workspace from %s (%d messages)", path, count)
        return True

    async def start(self) -> None:
        if self.state_file is not None and self._saver is None:
            self._saver = asyncio.get_running_loop().create_task(self._save_often())

    async def close(self) -> None:
        """End the event streams and save the workspace one last time."""
        self.hub.close()
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        if self.state_file is not None and self._dirty:
            self._dirty = False
            state.write(self.state_file, state.encode(state.snapshot(self.emu.workspace)))

    async def save(self) -> None:
        """Write the workspace to the state file now."""
        if self.state_file is None:
            return
        self._dirty = False
        text = state.encode(state.snapshot(self.emu.workspace))
        await asyncio.to_thread(state.write, self.state_file, text)

    async def _save_often(self) -> None:
        while True:
            await asyncio.sleep(SAVE_SECONDS)
            if self._dirty:
                try:
                    await self.save()
                except OSError:
                    self._dirty = True
                    log.exception("saving the workspace to %s failed", self.state_file)

    # changes (called by the emulator)

    @property
    def watching(self) -> bool:
        """Whether changes matter: a page is connected or the workspace is kept in a file."""
        return self.hub.listening or self.state_file is not None

    def message(self, channel_id: str, ts: str) -> None:
        """A message was posted or changed (a stream's text grew, an edit, a new reply)."""
        self._dirty = True
        if not self.hub.listening:
            return
        workspace = self.emu.workspace
        stored = workspace.messages.get(channel_id, {}).get(ts)
        if stored is None:
            return
        self.hub.publish(
            "message", {"channel": channel_id, "message": self._render(channel_id, stored)}
        )
        root = stored.get("thread_ts")
        if root and root != ts:
            parent = workspace.messages.get(channel_id, {}).get(root)
            if parent is not None:  # its reply count and latest reply changed
                self.hub.publish(
                    "message", {"channel": channel_id, "message": self._render(channel_id, parent)}
                )

    def message_deleted(self, channel_id: str, ts: str, thread_ts: str | None) -> None:
        """A message was deleted; its thread's parent changed (or it left a tombstone)."""
        self._dirty = True
        if not self.hub.listening:
            return
        self.hub.publish("message_deleted", {"channel": channel_id, "ts": ts})
        if thread_ts and thread_ts != ts:
            self.message(channel_id, thread_ts)
        elif ts in self.emu.workspace.messages.get(channel_id, {}):
            self.message(channel_id, ts)  # a parent with replies leaves a tombstone

    def status(self, channel_id: str, thread_ts: str) -> None:
        if not self.hub.listening:
            return
        current = self.emu.workspace.statuses.get((channel_id, thread_ts), "")
        self.hub.publish(
            "status", {"channel": channel_id, "thread_ts": thread_ts, "status": current}
        )

    def workspace_changed(self) -> None:
        """Users or channels changed (the page reloads its sidebar)."""
        self._dirty = True
        self.hub.publish("workspace", {})

    def command_responses(self) -> None:
        """Publish slash-command answers not published yet (and in_channel messages they made)."""
        responses = self.emu.commands.responses
        fresh, self._sent_responses = responses[self._sent_responses :], len(responses)
        for response in fresh:
            body = response.get("body") or {}
            self.hub.publish(
                "command_response",
                {
                    "command_id": response["command_id"],
                    "command": response["command"],
                    "channel": response["channel"],
                    "user": response["user"],
                    "via": response["via"],
                    "response_type": response["response_type"],
                    "text": response["text"],
                    "blocks": response["blocks"],
                    "replace_original": bool(body.get("replace_original")),
                    "delete_original": bool(body.get("delete_original")),
                },
            )
            if response["response_type"] == "in_channel":
                shown = self.emu.workspace.top_level(response["channel"])
                if shown:
                    self.message(response["channel"], shown[-1]["ts"])

    def ephemerals(self) -> None:
        """Publish ephemeral messages (chat.postEphemeral) not published yet."""
        posted = self.emu.workspace.ephemerals
        fresh, self._sent_ephemerals = posted[self._sent_ephemerals :], len(posted)
        for ephemeral in fresh:
            self.hub.publish("ephemeral", ephemeral)

    def api_call(self, method: str, args: dict[str, Any], result: dict[str, Any]) -> None:
        """The app called a Web API method; publish what it changed."""
        if not result.get("ok"):
            return
        workspace = self.emu.workspace
        if method in MESSAGE_METHODS:
            channel_id, ts = str(result["channel"]), str(result["ts"])
            self.message(channel_id, ts)
            stored = workspace.messages.get(channel_id, {}).get(ts)
            if stored is not None:  # a bot reply clears the thread's status
                self.status(channel_id, str(stored.get("thread_ts") or ts))
        elif method == "chat.delete":
            self.message_deleted(str(result["channel"]), str(result["ts"]), None)
        elif method == "chat.postEphemeral":
            self.ephemerals()
        elif method == "assistant.threads.setStatus":
            try:
                channel = workspace.resolve_channel(str(args.get("channel_id")))
            except EmulatorError:
                return
            self.status(channel.id, workspace.thread_root(channel.id, str(args.get("thread_ts"))))
        elif method in WORKSPACE_METHODS:
            self.workspace_changed()

    def _render(self, channel_id: str, message: dict[str, Any]) -> dict[str, Any]:
        rendered = self.emu.workspace.render(channel_id, message)
        rendered["permalink"] = self.emu.workspace.permalink(
            self.emu.url, channel_id, message["ts"]
        )
        return rendered
