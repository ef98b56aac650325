"""Lore's JSON API over the agent (`/api/...`), read by the playground and scriptable by admins.

    GET /api/info                                      mode (agent or retrieval-only), model, teams
    GET /api/teams                                     workspaces that have memory or conversations
    GET /api/teams/{team}/memory                       memory blocks as they are now
    GET /api/teams/{team}/memory/{label}/versions      a block's versions, newest first, with diffs
    GET /api/teams/{team}/conversations                threads -> conversation ids, last activity
    GET /api/teams/{team}/notes                        active notes with their sources, newest
                                                       first (?retracted=1: retracted ones too)
    GET /api/teams/{team}/search?q=...                 archive search, admin view (every channel)
    GET /api/teams/{team}/events                       server-sent events: memory, notes,
                                                       conversations, archive (a snapshot first,
                                                       then changes)

Who may call it:
- local mode (no Slack credentials): clients on the loopback interface, without a token;
- otherwise only with `Authorization: Bearer $LORE_ADMIN_TOKEN`. With no LORE_ADMIN_TOKEN set
  outside local mode the API is disabled: every `/api/` path answers 404 as if it did not exist.
  In local mode a client that is not on 127.0.0.1 gets 403 unless it sends the token.

The routes are added at start-up (`add_api_routes`, from `make_web_app`) and answer 404 until
`enable_api(lore)` hands them the stores of the Lore they belong to.

Memory and conversations are read through their stores (`MemoryBlocks`, `Conversations`), as
an operator's access value allows (`Access.for_operator`: every channel, every block). The event
stream polls them (every POLL_SECONDS), so it sees changes made by any Lore process sharing the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from app.agent.access import Access
from memory.archive import Archive
from memory.blocks import DEFAULT_BLOCKS, Block, BlockSummary, MemoryBlocks
from memory.conversations import Conversation, Conversations
from memory.messages import ArchivedMessage, SearchFilters
from memory.notes import Note, Notes

if TYPE_CHECKING:
    from app.main import Lore

log = logging.getLogger("lore.api")

POLL_SECONDS = 0.5
PING_SECONDS = 15.0
CONVERSATIONS_LIMIT = 50
VERSIONS_LIMIT = 20
SEARCH_LIMIT = 10
TITLE_CHARS = 120
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiProblem(Exception):
    """A request the API refuses: HTTP status, error code and a readable message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _problem(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"ok": False, "error": error, "message": message}
    return web.json_response(body, status=status, headers=headers)


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes that were stored in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def line_diff(old: str, new: str) -> list[dict[str, str]]:
    """What changed between two versions of a block, line by line, with one line of context.

    Each item is {"op": "+" | "-" | " " | "@", "text": ...}; "@" starts a hunk.
    """
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), n=1, lineterm="")
    diff: list[dict[str, str]] = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            diff.append({"op": "@", "text": line})
        else:
            diff.append({"op": line[:1] or " ", "text": line[1:]})
    return diff


def _message_json(message: ArchivedMessage) -> dict[str, Any]:
    return {
        "channel_id": message.channel_id,
        "channel_type": message.channel_type,
        "ts": message.ts,
        "thread_ts": message.thread_ts,
        "user_id": message.user_id,
        "text": message.text,
        "permalink": message.permalink,
        "is_bot": message.is_bot,
    }


def _conversation_ref(row: Conversation | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"id": row.id, "channel_id": row.channel_id, "thread_ts": row.thread_ts}


def _timestamp(value: str, name: str) -> float:
    """Unix seconds, or a date YYYY-MM-DD (midnight UTC)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        message = f"{name} must be unix seconds or YYYY-MM-DD"
        raise ApiProblem(400, "invalid_arguments", message) from None


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiProblem(400, "invalid_arguments", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiProblem(400, "invalid_arguments", f"{name} must be between {low} and {high}")
    return value


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_loopback(request: web.Request) -> bool:
    """A client on this machine that asked for this machine by a loopback name.

    Checking the Host header as well keeps pages on other sites (DNS rebinding) out.
    """
    remote = request.remote or ""
    try:
        local_client = ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False
    return local_client and (request.url.host or "") in LOOPBACK_HOSTS


@dataclass
class ApiAccess:
    """Who may call the API (see the module docstring)."""

    local_mode: bool
    admin_token: str | None
    allowed_origins: frozenset[str] = frozenset()

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the refusal to send."""
        given = bearer_token(request)
        token = self.admin_token
        if token is not None and given is not None:
            if hmac.compare_digest(given.encode(), token.encode()):
                return None
        if self.local_mode and is_loopback(request):
            return None
        if token is None:
            if not self.local_mode:
                return _problem(404, "not_found", "the admin API is disabled: set LORE_ADMIN_TOKEN")
            return _problem(
                403,
                "forbidden",
                "in local mode the API is open to 127.0.0.1 only; "
                "set LORE_ADMIN_TOKEN to call it from elsewhere",
            )
        challenge = {"WWW-Authenticate": 'Bearer realm="lore"'}
        if given is None:
            return _problem(
                401, "not_authed", "send Authorization: Bearer $LORE_ADMIN_TOKEN", challenge
            )
        return _problem(401, "invalid_auth", "wrong admin token", challenge)

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        """CORS headers for the playground's origin (the emulator's page), none for others."""
        origin = request.headers.get("Origin")
        if origin is None or origin not in self.allowed_origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": "Authorization",
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }


class LoreApi:
    """The handlers, over one Lore's stores."""

    def __init__(
        self,
        *,
        archive: Archive,
        blocks: MemoryBlocks,
        conversations: Conversations,
        access: ApiAccess,
        retrieval_only: bool,
        model: str | None,
        stopping: asyncio.Event,
        playground_url: str | None = None,
        notes: Notes | None = None,
    ) -> None:
        self._archive = archive
        self._notes = notes
        self._blocks = blocks
        self._conversations = conversations
        self.access = access
        self._retrieval_only = retrieval_only
        self._model = model
        self._stopping = stopping
        self.playground_url = playground_url

    # handlers

    async def info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "ok": True,
                "mode": "retrieval-only" if self._retrieval_only else "agent",
                "model": None if self._retrieval_only else self._model,
                "local_mode": self.access.local_mode,
                "teams": await self._teams(),
                "playground_url": self.playground_url,
            }
        )

    async def teams(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "teams": await self._teams()})

    async def memory(self, request: web.Request) -> web.StreamResponse:
        team_id = request.match_info["team_id"]
        return web.json_response({"ok": True, **await self.memory_payload(team_id)})

    async def versions(self, request: web.Request) -> web.StreamResponse:
        team_id = request.match_info["team_id"]
        label = request.match_info["label"]
        limit = _int(request, "limit", VERSIONS_LIMIT, 1, 500)
        before = _int(request, "before", 0, 0, 2**31)
        access = Access.for_operator(team_id)
        history = await self._blocks.history(team_id, label, access.memory)
        if not history:
            raise ApiProblem(404, "block_not_found", f"no memory block named {label!r}")
        newest_first = list(reversed(history))
        if before:
            newest_first = [block for block in newest_first if block.version < before]
        page = newest_first[:limit]
        previous = {block.version: block for block in history}
        origins = await self._conversation_refs(
            {b.conversation_id for b in page if b.conversation_id}
        )
        versions = []
        for block in page:
            earlier = previous.get(block.version - 1)
            diff = line_diff(earlier.value if earlier else "", block.value)
            versions.append(
                {
                    **self._block_json(block),
                    "conversation": origins.get(block.conversation_id or ""),
                    "diff": diff,
                    "added": sum(1 for item in diff if item["op"] == "+"),
                    "removed": sum(1 for item in diff if item["op"] == "-"),
                }
            )
        more = len(newest_first) > limit
        return web.json_response(
            {
                "ok": True,
                "team_id": team_id,
                "label": label,
                "total": len(history),
                "versions": versions,
                "next_before": page[-1].version if more and page else None,
            }
        )

    async def notes(self, request: web.Request) -> web.StreamResponse:
        team_id = request.match_info["team_id"]
        retracted = request.query.get("retracted", "") in {"1", "true", "yes"}
        return web.json_response({"ok": True, **await self.notes_payload(team_id, retracted)})

    async def conversations(self, request: web.Request) -> web.StreamResponse:
        team_id = request.match_info["team_id"]
        limit = _int(request, "limit", CONVERSATIONS_LIMIT, 1, 500)
        payload = await self.conversations_payload(team_id, limit)
        return web.json_response({"ok": True, **payload})

    async def search(self, request: web.Request) -> web.StreamResponse:
        team_id = request.match_info["team_id"]
        query = request.query.get("q", "").strip()
        if not query:
            raise ApiProblem(400, "invalid_arguments", "q (what to look for) is required")
        limit = _int(request, "limit", SEARCH_LIMIT, 1, 100)
        channels = request.query.get("channel")
        after = request.query.get("after")
        before = request.query.get("before")
        filters = SearchFilters(
            channels=frozenset(c for c in channels.split(",") if c) if channels else None,
            user_id=request.query.get("user") or None,
            after=_timestamp(after, "after") if after else None,
            before=_timestamp(before, "before") if before else None,
        )
        access = Access.for_operator(team_id)
        hits = await self._archive.search(
            team_id, query, audience=access.audience, filters=filters, limit=limit
        )
        results = [
            {
                **_message_json(hit.message),
                "score": hit.score,
                "note": _note_json(hit.note) if hit.note else None,
            }
            for hit in hits
        ]
        return web.json_response(
            {"ok": True, "team_id": team_id, "query": query, "results": results}
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `memory`, `conversations` and `archive`, each on change."""
        team_id = request.match_info["team_id"]
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **self.access.cors_headers(request),
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        seen: dict[str, object] = {}
        last_write = loop.time()
        try:
            await response.write(b"retry: 2000\n\n")
            while not self._stopping.is_set():
                try:
                    changes = await self._changes(team_id, seen)
                except Exception:  # the database may be briefly away; keep the stream
                    log.exception("api events: polling %s failed", team_id)
                    changes = []
                for event, data in changes:
                    await response.write(_sse(event, data))
                    last_write = loop.time()
                if loop.time() - last_write >= PING_SECONDS:
                    await response.write(b": ping\n\n")
                    last_write = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), POLL_SECONDS)
        except ConnectionError:
            pass  # the page went away
        return response

    # payloads (also sent as events)

    async def memory_payload(self, team_id: str) -> dict[str, Any]:
        """The blocks as they are now; workspace-wide ones first, then scoped ones."""
        summaries = await self._blocks.summaries(team_id, Access.for_operator(team_id).memory)
        origins = await self._conversation_refs(
            {s.newest.conversation_id for s in summaries if s.newest and s.newest.conversation_id}
        )
        return {"team_id": team_id, "blocks": [_summary_json(s, origins) for s in summaries]}

    async def notes_payload(self, team_id: str, retracted: bool = False) -> dict[str, Any]:
        """The workspace's notes (every channel: an operator's view), newest first."""
        if self._notes is None:
            return {"team_id": team_id, "notes": []}
        audience = Access.for_operator(team_id).audience
        notes = (
            await self._notes.history(team_id)
            if retracted
            else await self._notes.active(team_id, audience=audience)
        )
        return {"team_id": team_id, "notes": [_note_json(note) for note in notes]}

    async def conversations_payload(
        self, team_id: str, limit: int = CONVERSATIONS_LIMIT
    ) -> dict[str, Any]:
        """The most recently active conversations, with their thread's first words."""
        recent = await self._conversations.recent(team_id, limit)
        total = await self._conversations.count(team_id)
        items = []
        for conversation in recent:
            parent = await self._archive.get(
                team_id, conversation.channel_id, conversation.thread_ts
            )
            title = " ".join(parent.text.split())[:TITLE_CHARS] if parent else None
            items.append(
                {
                    "id": conversation.id,
                    "channel_id": conversation.channel_id,
                    "thread_ts": conversation.thread_ts,
                    "created_at": _iso(conversation.created_at),
                    "last_activity_at": _iso(conversation.last_activity_at),
                    "bot_replied": conversation.bot_replied,
                    "title": title,
                    "permalink": parent.permalink if parent else None,
                }
            )
        return {"team_id": team_id, "total": total, "conversations": items}

    # helpers

    async def _changes(self, team_id: str, seen: dict[str, object]) -> list[tuple[str, object]]:
        """The events whose data changed since `seen` (updated in place)."""
        memory_mark = await self._blocks.change_mark(team_id)
        conversations_mark = await self._conversations.change_mark(team_id)
        archive_count = await self._archive.count(team_id)
        notes_mark = await self._notes.change_mark(team_id) if self._notes else (0, 0)
        marks: dict[str, object] = {
            "memory": tuple(memory_mark),
            "notes": notes_mark,
            "conversations": tuple(conversations_mark),
            "archive": archive_count,
        }
        changes: list[tuple[str, object]] = []
        for event, mark in marks.items():
            if event in seen and seen[event] == mark:
                continue
            seen[event] = mark
            if event == "memory":
                changes.append((event, await self.memory_payload(team_id)))
            elif event == "notes":
                changes.append((event, await self.notes_payload(team_id)))
            elif event == "conversations":
                changes.append((event, await self.conversations_payload(team_id)))
            else:
                changes.append((event, {"team_id": team_id, "messages": archive_count}))
        return changes

    async def _teams(self) -> list[str]:
        return sorted(await self._blocks.teams() | await self._conversations.teams())

    async def _conversation_refs(self, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        found = await self._conversations.by_ids(set(ids))
        return {conversation_id: _conversation_ref(c) for conversation_id, c in found.items()}

    @staticmethod
    def _block_json(block: Block) -> dict[str, Any]:
        return {
            "label": block.label,
            "value": block.value,
            "version": block.version,
            "char_limit": block.char_limit,
            "chars": len(block.value),
            "updated_at": _iso(block.created_at),
            "operation": block.operation,
            "conversation_id": block.conversation_id,
            "user_id": block.user_id,
        }


def _summary_json(
    summary: BlockSummary, origins: dict[str, dict[str, Any] | None]
) -> dict[str, Any]:
    """One block of the memory payload; a block not created yet shows its default at version 0."""
    block = summary.newest
    if block is None:  # not created yet: the agent creates it on first use
        value = DEFAULT_BLOCKS[summary.label]
        return {
            "label": summary.label,
            "value": value,
            "version": 0,
            "versions": 0,
            "char_limit": None,
            "chars": len(value),
            "updated_at": None,
            "operation": None,
            "conversation_id": None,
            "user_id": None,
            "conversation": None,
            "scoped": False,
        }
    return {
        **LoreApi._block_json(block),
        "versions": summary.versions,
        "conversation": origins.get(block.conversation_id or ""),
        "scoped": summary.scoped,
    }


def _note_json(note: Note) -> dict[str, Any]:
    return {
        "id": note.id,
        "text": note.text,
        "channel_id": note.channel_id,
        "channel_type": note.channel_type,
        "sources": [
            {"channel_id": s.channel_id, "ts": s.ts, "permalink": s.permalink} for s in note.sources
        ],
        "written_by": note.written_by,
        "learned_at": _iso(note.learned_at),
        "supersedes": note.supersedes,
        "retracted_at": _iso(note.retracted_at),
        "retracted_reason": note.retracted_reason,
        "retracted_by": note.retracted_by,
    }


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class ApiSlot:
    """The API's place in the web application, filled by `enable_api` once Lore is built."""

    api: LoreApi | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def shutdown(self, _application: web.Application) -> None:
        """End the event streams, so stopping the server does not wait for open pages."""
        self.stopping.set()

    def route(self, name: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            api = self.api
            if api is None:
                return _problem(404, "not_found", "the admin API is not enabled in this process")
            refused = api.access.check(request)
            cors = api.access.cors_headers(request)
            if refused is not None:
                refused.headers.update(cors)
                return refused
            try:
                response: web.StreamResponse = await getattr(api, name)(request)
            except ApiProblem as problem:
                response = _problem(problem.status, problem.error, problem.message)
            if not response.prepared:
                response.headers.update(cors)
            return response

        return handle

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """CORS preflight (the playground sends Authorization only outside local mode)."""
        if self.api is None:
            return _problem(404, "not_found", "the admin API is not enabled in this process")
        return web.Response(status=204, headers=self.api.access.cors_headers(request))

    async def index(self, request: web.Request) -> web.StreamResponse:
        """`/`: the playground in local mode (served by the emulator), else nothing."""
        if self.api is not None and self.api.playground_url:
            raise web.HTTPFound(self.api.playground_url)
        return _problem(404, "not_found", "Lore serves Slack at /slack/events")


API_SLOT = web.AppKey("lore_api", ApiSlot)

ROUTES = (
    ("/api/info", "info"),
    ("/api/teams", "teams"),
    ("/api/teams/{team_id}/memory", "memory"),
    ("/api/teams/{team_id}/memory/{label}/versions", "versions"),
    ("/api/teams/{team_id}/notes", "notes"),
    ("/api/teams/{team_id}/conversations", "conversations"),
    ("/api/teams/{team_id}/search", "search"),
    ("/api/teams/{team_id}/events", "events"),
)


def add_api_routes(application: web.Application) -> None:
    """Add `/` and the `/api/` routes; they answer 404 until `enable_api` is called."""
    slot = ApiSlot()
    application[API_SLOT] = slot
    application.on_shutdown.append(slot.shutdown)
    application.router.add_get("/", slot.index)
    for path, name in ROUTES:
        application.router.add_get(path, slot.route(name))
    application.router.add_route("OPTIONS", "/api/{tail:.*}", slot.preflight)


def enable_api(
    lore: Lore, *, playground_url: str | None = None, allowed_origins: Iterable[str] = ()
) -> LoreApi:
    """Serve the API of `lore` on its web server (and `/` -> the playground, when given)."""
    settings = lore.settings
    token = settings.lore_admin_token.get_secret_value() if settings.lore_admin_token else None
    slot = lore.runner.app[API_SLOT]
    api = LoreApi(
        archive=lore.stores.archive,
        blocks=lore.stores.blocks,
        conversations=lore.stores.conversations,
        access=ApiAccess(settings.local_mode, token, frozenset(allowed_origins)),
        retrieval_only=lore.services.agent.retrieval_only,
        model=settings.lore_model,
        stopping=slot.stopping,
        playground_url=playground_url,
        notes=lore.stores.notes,
    )
    slot.api = api
    return api
