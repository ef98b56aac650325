"""The playground without a browser: the page and its event stream on the emulator, the saved
workspace, and local mode (demo seeded once through the real path, kept across restarts)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from app.local import start_local_slack
from app.main import Lore, start_lore
from emulator import EmulatorConfig, SlackEmulator
from emulator.playground import ASSETS, demo
from memory.audience import Audience
from tests.harness import archived, lore_settings, settled

HTML = {"Accept": "text/html,application/xhtml+xml"}


class EventReader:
    """Reads a server-sent event stream in the background."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def __aenter__(self) -> EventReader:
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(5):
            await self._connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        async with aiohttp.ClientSession() as session, session.get(self.url) as response:
            event = None
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    if event == "hello":
                        self._connected.set()
                    await self.events.put((event, json.loads(line[6:])))

    async def next(self, name: str, where: Any = None, timeout: float = 10) -> Any:  # noqa: ASYNC109
        """The next `name` event (whose data satisfies `where`, when given)."""
        async with asyncio.timeout(timeout):
            while True:
                event, data = await self.events.get()
                if event == name and (where is None or where(data)):
                    return data


async def test_browsers_get_the_page_and_scripts_get_the_hint(emulator: SlackEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(emulator.url + "/", headers=HTML) as response:
            page = await response.text()
            assert response.content_type == "text/html"
        assert '<script type="module" src="/playground/app.js"></script>' in page
        assert 'role="log" aria-live="polite"' in page
        async with session.get(emulator.url + "/") as response:
            assert "/_emulator/messages" in await response.text()
        for name, content_type in ASSETS.items():
            async with session.get(f"{emulator.url}/playground/{name}") as response:
                assert response.status == 200, name
                assert response.content_type == content_type
        async with session.get(f"{emulator.url}/playground/..%2F__init__.py") as response:
            assert response.status == 404
        async with session.get(emulator.url + "/_emulator/playground") as response:
            config = await response.json()
        assert config["team"]["id"] == "T0LORE" and config["agent_api"] is None
        assert config["bot"]["user_id"] == "U0LORE"

        posted = await emulator.post_message("U0BOB", "C0GENERAL", "parent")
        reply = await emulator.post_message("U0BOB", "C0GENERAL", "reply", posted["ts"])
        async with session.get(reply["permalink"], headers=HTML, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == f"/#/C0GENERAL/{posted['ts']}/{reply['ts']}"
        async with session.get(reply["permalink"]) as response:
            assert (await response.json())["message"]["text"] == "reply"


async def test_stream_follows_posts_streams_statuses_ephemerals_and_deletions(
    emulator: SlackEmulator,
) -> None:
    app = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)
    async with EventReader(emulator.url + "/_emulator/stream") as stream:
        parent = await emulator.post_message("U0ALICE", "C0GENERAL", "<@U0LORE> hi")
        seen = await stream.next("message")
        assert seen["channel"] == "C0GENERAL" and seen["message"]["text"] == "<@U0LORE> hi"
        assert seen["message"]["permalink"] == parent["permalink"]

        await app.assistant_threads_setStatus(
            channel_id="C0GENERAL", thread_ts=parent["ts"], status="is thinking…"
        )
        status = await stream.next("status")
        assert status == {
            "channel": "C0GENERAL",
            "thread_ts": parent["ts"],
            "status": "is thinking…",
        }

        started = await app.chat_startStream(
            channel="C0GENERAL",
            thread_ts=parent["ts"],
            recipient_team_id="T0LORE",
            recipient_user_id="U0ALICE",
            markdown_text="Hel",
        )
        first = await stream.next("message", lambda d: d["message"]["ts"] == started["ts"])
        assert first["message"]["streaming_state"] == "in_progress"
        assert first["message"]["text"] == "Hel"
        parent_now = await stream.next("message", lambda d: d["message"]["ts"] == parent["ts"])
        assert parent_now["message"]["reply_count"] == 1
        cleared = await stream.next("status")
        assert cleared["status"] == ""  # a reply ends the thread's status, as in Slack

        await app.chat_appendStream(channel="C0GENERAL", ts=started["ts"], markdown_text="lo")
        grown = await stream.next("message", lambda d: d["message"]["ts"] == started["ts"])
        assert grown["message"]["text"] == "Hello"
        await app.chat_stopStream(channel="C0GENERAL", ts=started["ts"], markdown_text="!")
        done = await stream.next("message", lambda d: d["message"]["ts"] == started["ts"])
        assert (done["message"]["text"], done["message"]["streaming_state"]) == (
            "Hello!",
            "completed",
        )

        await app.chat_postEphemeral(channel="C0GENERAL", user="U0BOB", text="just for Bob")
        ephemeral = await stream.next("ephemeral")
        assert (ephemeral["user"], ephemeral["text"]) == ("U0BOB", "just for Bob")

        await emulator.edit_message("C0GENERAL", parent["ts"], "<@U0LORE> hello")
        edited = await stream.next("message", lambda d: d["message"]["ts"] == parent["ts"])
        assert edited["message"]["text"] == "<@U0LORE> hello"
        await app.chat_delete(channel="C0GENERAL", ts=started["ts"])
        deleted = await stream.next("message_deleted")
        assert deleted == {"channel": "C0GENERAL", "ts": started["ts"]}

        emulator.add_channel("C0NEW", "new-channel", members=["U0ALICE"])
        await stream.next("workspace")


async def test_workspace_is_saved_and_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    config = EmulatorConfig(events_url=None)
    first = SlackEmulator(config)
    assert first.playground.keep_state_in(path) is False
    async with first:
        first.add_user("U0DAVE", "dave", real_name="Dave Diaz")
        first.add_channel("C0OPS", "ops", members=["U0DAVE"])
        parent = await first.post_message("U0DAVE", "C0OPS", "disk is full on worker-7")
        reply = await first.post_message("U0ALICE", "C0OPS", "on it", thread_ts=parent["ts"])
        await first.edit_message("C0OPS", reply["ts"], "on it, rotating logs")
        app = AsyncWebClient(token=config.bot_token, base_url=first.api_url)
        unfinished = await app.chat_startStream(
            channel="C0OPS",
            thread_ts=parent["ts"],
            recipient_team_id="T0LORE",
            recipient_user_id="U0DAVE",
            markdown_text="Looking",
        )
        await first.playground.save()
        assert path.exists()
        lonely = await first.post_message("U0BOB", "C0GENERAL", "saved when stopping")
    saved = json.loads(path.read_text())
    assert saved["format"] == 1 and "C0OPS" in saved["messages"]

    second = SlackEmulator(EmulatorConfig(events_url=None))
    assert second.playground.keep_state_in(path) is True
    async with second:
        assert second.workspace.user("U0DAVE").real_name == "Dave Diaz"
        assert second.workspace.channel("C0OPS").members == ["U0DAVE", "U0LORE", "U0ALICE"]
        thread = second.thread("C0OPS", parent["ts"])
        assert [m["text"] for m in thread] == [
            "disk is full on worker-7",
            "on it, rotating logs",
            "Looking",
        ]
        assert thread[0]["reply_count"] == 2
        assert thread[2]["ts"] == unfinished["ts"]
        assert thread[2]["streaming_state"] == "completed"  # that stream ended with the last run
        assert second.messages("C0GENERAL")[-1]["ts"] == lonely["ts"]
        later = await second.post_message("U0BOB", "C0GENERAL", "after the restart")
        assert float(later["ts"]) > float(lonely["ts"])


async def test_an_unreadable_saved_workspace_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    path.write_text("{not json")
    emulator = SlackEmulator(EmulatorConfig(events_url=None))
    assert emulator.playground.keep_state_in(path) is False
    assert not path.exists()
    kept = [p.name for p in tmp_path.iterdir()]  # noqa: ASYNC240 - a test's temporary folder
    assert len(kept) == 1 and kept[0].startswith("emulator.json.broken-")
    assert "C0GENERAL" in emulator.workspace.channels  # the default workspace


@pytest.fixture
async def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def start_local(data_dir: Path) -> tuple[Lore, SlackEmulator]:
    settings = lore_settings(data_dir, None, redis_url=None, lore_emulator_port=0)
    lore = await start_lore(settings)
    return lore, await start_local_slack(lore)


@pytest.fixture
async def local(data_dir: Path) -> AsyncIterator[tuple[Lore, SlackEmulator]]:
    lore, emulator = await start_local(data_dir)
    yield lore, emulator
    await lore.stop()
    await emulator.stop()


async def test_local_mode_seeds_the_demo_once_and_keeps_what_people_add(data_dir: Path) -> None:
    lore, emulator = await start_local(data_dir)
    try:
        seeded = demo.message_count()
        assert seeded >= 60 and len(demo.THREADS) >= 24
        channels = {c.name: c for c in emulator.workspace.channels.values() if not c.is_im}
        assert {"general", "deploys", "oncall", "customers", "leadership"} <= set(channels)
        assert channels["leadership"].is_private
        assert "U0BOB" not in channels["leadership"].members
        await archived(lore, "T0LORE", seeded)  # delivered as events, archived by Lore
        assert await lore.stores.archive.count("T0LORE") == seeded
        hits = await lore.stores.archive.search(
            "T0LORE", "PgBouncer pool size", audience=Audience.everyone(), limit=1
        )
        assert "PgBouncer" in hits[0].message.text
        assert hits[0].message.permalink and hits[0].message.permalink.startswith(emulator.url)

        async with aiohttp.ClientSession() as session:
            async with session.get(lore.url + "/", allow_redirects=False) as response:
                assert response.status == 302
                assert response.headers["Location"] == emulator.url + "/"
            async with session.get(emulator.url + "/_emulator/playground") as response:
                assert (await response.json())["agent_api"] == lore.url + "/api"
            async with session.post(
                emulator.url + "/_emulator/messages",
                json={"user": "U0ERIN", "channel": "C0RANDOM", "text": "kept across restarts"},
            ) as response:
                kept = await response.json()
        await archived(lore, "T0LORE", seeded + 1)
    finally:
        await lore.stop()
        await emulator.stop()
    assert (data_dir / "emulator.json").exists()

    lore, emulator = await start_local(data_dir)
    try:
        assert emulator.message("C0RANDOM", kept["ts"])["text"] == "kept across restarts"
        total = sum(len(store) for store in emulator.workspace.messages.values())
        assert total == seeded + 1  # not seeded again
        await settled(emulator, lore)
        assert emulator.deliveries == []  # nothing delivered again
        assert await lore.stores.archive.count("T0LORE") == seeded + 1
    finally:
        await lore.stop()
        await emulator.stop()


async def test_recall_answers_arrive_on_the_stream_and_more_results_works(
    local: tuple[Lore, SlackEmulator],
) -> None:
    lore, emulator = local
    await archived(lore, "T0LORE", demo.message_count())
    async with (
        EventReader(emulator.url + "/_emulator/stream") as stream,
        aiohttp.ClientSession() as session,
    ):
        body = {"user": "U0BOB", "channel": "C0DEPLOYS", "command": "/recall", "text": "deploy"}
        async with session.post(emulator.url + "/_emulator/commands", json=body) as response:
            ack = await response.json()
        assert ack["ok"] and "Searching" in ack["response"]["text"]
        command_id = ack["response_url"].rsplit("/", 1)[-1]
        first = await stream.next("command_response", lambda d: d["via"] == "ack")
        assert (first["command_id"], first["user"]) == (command_id, "U0BOB")
        answer = await stream.next("command_response", lambda d: d["via"] == "response_url")
        assert answer["replace_original"] and answer["response_type"] == "ephemeral"
        more = next(
            element
            for block in answer["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
            if element["action_id"] == "recall_more"
        )
        shown = json.dumps(answer["blocks"])
        assert "C0LEADS" not in shown  # Bob is not in #leadership

        press = {
            "user": "U0BOB",
            "command_id": command_id,
            "action_id": "recall_more",
            "value": more["value"],
        }
        async with session.post(emulator.url + "/_emulator/actions", json=press) as response:
            assert (await response.json())["ok"]
        page_two = await stream.next("command_response", lambda d: d["via"] == "response_url")
        assert page_two["command_id"] == command_id and "*6.*" in json.dumps(page_two["blocks"])
        press["command_id"] = "unknown"
        async with session.post(emulator.url + "/_emulator/actions", json=press) as response:
            assert response.status == 404


async def test_guests_other_organisations_and_sharing_are_saved_too(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    first = SlackEmulator(EmulatorConfig(events_url=None))
    first.playground.keep_state_in(path)
    async with first:
        first.add_channel("C0PARTNER", "partner", members=["U0BOB"])
        first.add_guest("U0GUEST", "gina", ["C0PARTNER"], single_channel=True)
        first.add_external_user("U0EXT", "ext", "T0OTHER", ["C0PARTNER"])
        await first.playground.save()
        # each of these alone is a change worth keeping
        await first.share_channel("C0PARTNER", "T0OTHER")
        await first.share_channel("C0PARTNER", "T0THIRD")
        await first.change_user("U0BOB", is_admin=True)
    second = SlackEmulator(EmulatorConfig(events_url=None))
    assert second.playground.keep_state_in(path) is True
    async with second:
        guest = second.workspace.user("U0GUEST")
        assert (guest.is_restricted, guest.is_ultra_restricted) == (True, True)
        assert second.workspace.user("U0EXT").home_team_id == "T0OTHER"
        assert second.workspace.user("U0BOB").is_admin is True
        partner = second.workspace.channel("C0PARTNER")
        assert partner.is_ext_shared and partner.connected_team_ids == ["T0OTHER", "T0THIRD"]
        await second.unshare_channel("C0PARTNER", "T0OTHER")
        assert partner.is_ext_shared  # still shared with the third organisation
        await second.unshare_channel("C0PARTNER", "T0THIRD")
        assert not partner.is_ext_shared
