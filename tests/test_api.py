"""Lore's JSON API (`/api/...`): memory blocks and versions, conversations, search, events, and
who may call it (open on 127.0.0.1 in local mode, a bearer token otherwise)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from app.api import ApiAccess, enable_api, line_diff
from app.main import Lore, start_lore
from memory.archive import ArchivedMessage
from memory.blocks import MemoryScope
from memory.edits import Insert, Replace
from memory.notes import NoteSource
from tests.harness import lore_settings

EVERYTHING = MemoryScope.everything()

TEAM = "T0LORE"
PAGE = "http://127.0.0.1:39999"


@pytest.fixture
async def local_lore(tmp_path: Path) -> AsyncIterator[Lore]:
    """Lore in local mode (no Slack credentials), retrieval-only, its API enabled."""
    lore = await start_lore(lore_settings(tmp_path, None, redis_url=None))
    enable_api(lore, playground_url=f"{PAGE}/", allowed_origins={PAGE})
    yield lore
    await lore.stop()


async def get(lore: Lore, path: str, **headers: str) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(lore.url + path, headers=headers, allow_redirects=False) as response,
    ):
        text = await response.text()
        body = json.loads(text) if response.content_type == "application/json" else text
        return response.status, body, response


BLOCK_KEYS = {
    "label",
    "value",
    "version",
    "versions",
    "char_limit",
    "chars",
    "updated_at",
    "operation",
    "conversation_id",
    "user_id",
    "conversation",
    "scoped",
}


async def test_memory_blocks_with_versions_diffs_and_origin(local_lore: Lore) -> None:
    lore = local_lore
    blocks = lore.stores.blocks
    thread = await lore.stores.conversations.open(TEAM, "C0GENERAL", "1700000000.000100")
    await blocks.current(TEAM, EVERYTHING)
    await blocks.edit(
        TEAM,
        "org",
        Insert("Deploys freeze on Fridays."),
        conversation_id=thread.id,
        user_id="U1",
        scope=EVERYTHING,
    )
    await blocks.edit(
        TEAM,
        "org",
        Replace("on Fridays.", "on Fridays after 14:00 UTC."),
        conversation_id=thread.id,
        user_id="U2",
        scope=EVERYTHING,
    )
    await blocks.current(TEAM, MemoryScope(frozenset({"private:C0LEADS"})))
    await blocks.edit(TEAM, "private:C0LEADS", Insert("Prices rise in October."), scope=EVERYTHING)

    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory")
    assert status == 200
    by_label = {block["label"]: block for block in body["blocks"]}
    assert list(by_label) == ["persona", "org", "private:C0LEADS"]
    org = by_label["org"]
    assert org["value"] == "Deploys freeze on Fridays after 14:00 UTC."
    assert (org["version"], org["versions"], org["operation"], org["user_id"]) == (
        3,
        3,
        "replace",
        "U2",
    )
    assert org["conversation"] == {
        "id": thread.id,
        "channel_id": "C0GENERAL",
        "thread_ts": "1700000000.000100",
    }
    assert org["updated_at"].endswith("+00:00")
    assert by_label["private:C0LEADS"]["scoped"] and not org["scoped"]
    assert all(set(block) == BLOCK_KEYS for block in body["blocks"])  # the payload's shape

    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory/org/versions")
    assert status == 200 and body["total"] == 3
    newest, middle, first = body["versions"]
    assert [newest["version"], middle["version"], first["version"]] == [3, 2, 1]
    assert {"op": "-", "text": "Deploys freeze on Fridays."} in newest["diff"]
    assert {"op": "+", "text": "Deploys freeze on Fridays after 14:00 UTC."} in newest["diff"]
    assert (middle["added"], middle["removed"], middle["operation"]) == (1, 0, "insert")
    assert middle["conversation"]["id"] == thread.id and first["conversation"] is None
    assert first["operation"] == "create" and body["next_before"] is None

    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory/org/versions?limit=2")
    assert [v["version"] for v in body["versions"]] == [3, 2] and body["next_before"] == 2
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory/org/versions?before=2")
    assert [v["version"] for v in body["versions"]] == [1]
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory/private:C0LEADS/versions")
    assert status == 200 and body["versions"][0]["value"] == "Prices rise in October."
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory/nope/versions")
    assert status == 404 and body["error"] == "block_not_found"
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/memory/org/versions?limit=zero")
    assert status == 400 and "limit" in body["message"]


async def test_memory_of_a_new_workspace_shows_the_defaults_without_writing(
    local_lore: Lore,
) -> None:
    status, body, _ = await get(local_lore, "/api/teams/TNEW/memory")
    assert status == 200
    assert [(b["label"], b["version"]) for b in body["blocks"]] == [("persona", 0), ("org", 0)]
    assert "institutional memory" in body["blocks"][0]["value"]
    assert all(set(block) == BLOCK_KEYS for block in body["blocks"])
    assert await local_lore.stores.blocks.history("TNEW", "persona", EVERYTHING) == []


async def test_conversations_list_threads_with_ids_activity_and_titles(local_lore: Lore) -> None:
    lore = local_lore
    await lore.stores.archive.add(
        [
            ArchivedMessage(
                TEAM,
                "C0GENERAL",
                "channel",
                "1700000000.000100",
                "<@U0LORE> who owns the deploy pipeline?",
                user_id="U0ALICE",
                permalink="http://x/archives/C0GENERAL/p1700000000000100",
            )
        ]
    )
    older = await lore.stores.conversations.open(TEAM, "C0GENERAL", "1700000000.000100")
    newer = await lore.stores.conversations.open(TEAM, "D0ALICE", "1700000100.000100")
    await lore.stores.conversations.record_reply(newer.id, "1700000100.000100")

    status, body, _ = await get(lore, f"/api/teams/{TEAM}/conversations")
    assert status == 200 and body["total"] == 2
    first, second = body["conversations"]
    assert (first["id"], first["channel_id"], first["bot_replied"]) == (newer.id, "D0ALICE", True)
    assert first["title"] is None
    assert (second["id"], second["thread_ts"]) == (older.id, "1700000000.000100")
    assert second["title"] == "<@U0LORE> who owns the deploy pipeline?"
    assert second["permalink"].endswith("p1700000000000100")
    assert first["last_activity_at"] >= second["last_activity_at"]
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/conversations?limit=1")
    assert [c["id"] for c in body["conversations"]] == [newer.id] and body["total"] == 2


async def test_search_is_the_admin_view_with_filters(local_lore: Lore) -> None:
    lore = local_lore

    def message(channel: str, kind: str, ts: str, text: str, user: str) -> ArchivedMessage:
        return ArchivedMessage(TEAM, channel, kind, ts, text, user_id=user, permalink=f"p/{ts}")

    await lore.stores.archive.add(
        [
            message("C0DEPLOYS", "channel", "1700000000.000100", "Deploy freeze on Fridays", "U1"),
            message("C0LEADS", "group", "1700086400.000100", "Deploy freeze for the board", "U2"),
            message("D0BOB", "im", "1700172800.000100", "Lunch on Friday?", "U3"),
        ]
    )
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/search?q=deploy+freeze")
    assert status == 200 and body["query"] == "deploy freeze"
    channels = [hit["channel_id"] for hit in body["results"]]
    assert {"C0DEPLOYS", "C0LEADS"} <= set(channels)  # private channels too: the admin view
    top = body["results"][0]
    assert {"channel_id", "ts", "thread_ts", "user_id", "text", "permalink", "score"} <= set(top)

    status, body, _ = await get(lore, f"/api/teams/{TEAM}/search?q=deploy+freeze&channel=C0LEADS")
    assert [hit["channel_id"] for hit in body["results"]] == ["C0LEADS"]
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/search?q=deploy+freeze&user=U1")
    assert [hit["user_id"] for hit in body["results"]] == ["U1"]
    status, body, _ = await get(
        lore, f"/api/teams/{TEAM}/search?q=deploy+freeze&after=2023-11-15&before=1700100000"
    )
    assert [hit["channel_id"] for hit in body["results"]] == ["C0LEADS"]
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/search?q=")
    assert status == 400 and body["error"] == "invalid_arguments"
    status, body, _ = await get(lore, f"/api/teams/{TEAM}/search?q=x&after=yesterday")
    assert status == 400 and "after" in body["message"]


async def test_info_says_the_mode_and_root_leads_to_the_playground(
    local_lore: Lore, tmp_path: Path
) -> None:
    await local_lore.stores.blocks.current(TEAM, EVERYTHING)
    status, body, _ = await get(local_lore, "/api/info")
    assert status == 200
    assert body["mode"] == "retrieval-only" and body["model"] is None
    assert body["local_mode"] is True and body["teams"] == [TEAM]
    status, _, response = await get(local_lore, "/")
    assert status == 302 and response.headers["Location"] == f"{PAGE}/"

    agent = await start_lore(
        lore_settings(
            tmp_path / "agent", None, redis_url=None, anthropic_api_key=secrets.token_hex(16)
        )
    )
    try:
        status, _, _ = await get(agent, "/api/info")
        assert status == 404  # not enabled in this process yet
        enable_api(agent)
        status, body, _ = await get(agent, "/api/info")
        assert (body["mode"], body["model"]) == ("agent", "claude-sonnet-4-6")
        status, _, _ = await get(agent, "/")
        assert status == 404  # no playground outside local mode
    finally:
        await agent.stop()


async def test_outside_local_mode_the_api_needs_the_admin_token(tmp_path: Path) -> None:
    slack = {
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": secrets.token_hex(16),
        "redis_url": None,
    }
    admin = secrets.token_hex(32)
    disabled = await start_lore(lore_settings(tmp_path / "a", None, **slack))
    try:
        enable_api(disabled)
        status, body, _ = await get(disabled, "/api/info")
        assert status == 404 and "LORE_ADMIN_TOKEN" in body["message"]
        status, _, _ = await get(disabled, f"/api/teams/{TEAM}/memory", Authorization="Bearer x")
        assert status == 404
    finally:
        await disabled.stop()

    guarded = await start_lore(lore_settings(tmp_path / "b", None, lore_admin_token=admin, **slack))
    try:
        enable_api(guarded)
        status, body, response = await get(guarded, "/api/info")
        assert status == 401 and body["error"] == "not_authed"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        status, body, _ = await get(guarded, "/api/info", Authorization="Bearer wrong")
        assert status == 401 and body["error"] == "invalid_auth"
        status, body, _ = await get(guarded, "/api/info", Authorization=f"Bearer {admin}")
        assert status == 200 and body["local_mode"] is False
        status, _, _ = await get(
            guarded, f"/api/teams/{TEAM}/search?q=hi", Authorization=f"Bearer {admin}"
        )
        assert status == 200
        status, _, _ = await get(guarded, f"/api/teams/{TEAM}/events")
        assert status == 401
        status, _, _ = await get(guarded, f"/api/teams/{TEAM}/notes")
        assert status == 401
        status, body, _ = await get(
            guarded, f"/api/teams/{TEAM}/notes", Authorization=f"Bearer {admin}"
        )
        assert status == 200 and body["notes"] == []
    finally:
        await guarded.stop()


def _request(remote: str, host: str = "127.0.0.1:3000", **headers: str) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 50000) if name == "peername" else default
    )
    return make_mocked_request(
        "GET", "/api/info", headers={"Host": host, **headers}, transport=transport
    )


def test_local_mode_is_open_to_this_machine_only() -> None:
    local = ApiAccess(local_mode=True, admin_token=None)
    assert local.check(_request("127.0.0.1")) is None
    assert local.check(_request("::1", host="localhost:3000")) is None
    refused = local.check(_request("192.168.1.20"))
    assert refused is not None and refused.status == 403
    rebound = local.check(_request("127.0.0.1", host="evil.example:3000"))
    assert rebound is not None and rebound.status == 403  # DNS rebinding: a page of another site
    with_token = ApiAccess(local_mode=True, admin_token="t")
    assert with_token.check(_request("192.168.1.20", Authorization="Bearer t")) is None
    denied = with_token.check(_request("192.168.1.20"))
    assert denied is not None and denied.status == 401


async def test_cors_only_for_the_playground_origin(local_lore: Lore) -> None:
    status, _, response = await get(local_lore, "/api/info", Origin=PAGE)
    assert status == 200 and response.headers["Access-Control-Allow-Origin"] == PAGE
    status, _, response = await get(local_lore, "/api/info", Origin="https://evil.example")
    assert status == 200 and "Access-Control-Allow-Origin" not in response.headers
    async with (
        aiohttp.ClientSession() as session,
        session.options(
            local_lore.url + "/api/info",
            headers={"Origin": PAGE, "Access-Control-Request-Headers": "authorization"},
        ) as response,
    ):
        assert response.status == 204
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_events_stream_memory_conversations_archive_and_notes_changes(
    local_lore: Lore,
) -> None:
    lore = local_lore
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def listen() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{lore.url}/api/teams/{TEAM}/events", headers={"Origin": PAGE}
            ) as response,
        ):
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Access-Control-Allow-Origin"] == PAGE
            event = None
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    await events.put((event, json.loads(line[6:])))

    async def next_event(name: str) -> Any:
        async with asyncio.timeout(5):
            while True:
                event, data = await events.get()
                if event == name:
                    return data

    listener = asyncio.create_task(listen())
    try:
        snapshot = await next_event("memory")
        assert [b["version"] for b in snapshot["blocks"]] == [0, 0]
        assert (await next_event("conversations"))["total"] == 0
        assert (await next_event("archive"))["messages"] == 0

        await lore.stores.blocks.current(TEAM, EVERYTHING)
        await lore.stores.blocks.edit(
            TEAM, "org", Insert("Staging is called tern."), scope=EVERYTHING
        )
        changed = await next_event("memory")
        org = next(b for b in changed["blocks"] if b["label"] == "org")
        assert org["value"] == "Staging is called tern."

        opened = await lore.stores.conversations.open(TEAM, "C0GENERAL", "1700000000.000100")
        assert (await next_event("conversations"))["conversations"][0]["id"] == opened.id
        await lore.stores.archive.add(
            [ArchivedMessage(TEAM, "C0GENERAL", "channel", "1700000000.000100", "hello")]
        )
        assert (await next_event("archive"))["messages"] == 1

        note = await lore.stores.notes.add(
            TEAM,
            text="Staging is called tern.",
            sources=[NoteSource("C0GENERAL", "1700000000.000100", "https://x/p1")],
            channel_type="channel",
            written_by="admin:U0ALICE",
        )
        [shown] = (await next_event("notes"))["notes"]
        assert shown["id"] == note.id and shown["sources"][0]["permalink"] == "https://x/p1"
        await lore.stores.notes.retract(TEAM, note.id, reason="renamed", by="admin:U0ALICE")
        assert (await next_event("notes"))["notes"] == []
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_open_event_streams_do_not_hold_up_shutdown(tmp_path: Path) -> None:
    lore = await start_lore(lore_settings(tmp_path, None, redis_url=None))
    enable_api(lore)
    session = aiohttp.ClientSession()
    response = await session.get(f"{lore.url}/api/teams/{TEAM}/events")
    await response.content.readline()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await lore.stop()
    assert loop.time() - started < 5
    response.close()
    await session.close()


def test_line_diff_marks_added_and_removed_lines() -> None:
    diff = line_diff("a\nb\nc", "a\nB\nc\nd")
    assert {"op": "-", "text": "b"} in diff and {"op": "+", "text": "B"} in diff
    assert {"op": "+", "text": "d"} in diff and diff[0]["op"] == "@"
    assert line_diff("same", "same") == []
