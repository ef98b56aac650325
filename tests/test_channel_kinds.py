"""A channel's kind is current in both indexes: made private, it stops reaching non-members at
once; deleted, its messages go; later writes of it take what Slack last said. SQLite and
PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.importer.writer import BatchWriter
from memory.archive import Archive, ArchivedMessage
from memory.audience import Audience
from memory.embeddings import OnnxEmbedder
from tests.conftest import new_team

PUBLIC_READER = Audience(frozenset({"C0OTHER"}))  # an answer in another public channel
MEMBER = Audience(frozenset({"C0PLANS"}))  # a member of C0PLANS, alone


@pytest.fixture
async def archive(
    any_engine: AsyncEngine, embedder: OnnxEmbedder, tmp_path: Path
) -> AsyncIterator[Archive]:
    opened = await Archive.open_embedded(tmp_path / "chroma", embedder, any_engine)
    yield opened
    await opened.close()


def message(team: str, channel: str, n: int, text_: str, kind: str = "channel") -> ArchivedMessage:
    return ArchivedMessage(
        team_id=team,
        channel_id=channel,
        channel_type=kind,
        ts=f"1700000000.{n:06d}",
        text=text_,
        user_id="U0ALICE",
        user_name="Alice Anders",
    )


async def found(archive: Archive, team: str, audience: Audience, query: str) -> set[str]:
    return {hit.message.ts for hit in await archive.search(team, query, audience=audience)}


async def scope_of(engine: AsyncEngine, team: str, ts: str) -> str:
    async with engine.connect() as connection:
        row = await connection.execute(
            text("SELECT scope FROM archive_messages WHERE team_id = :t AND ts = :ts"),
            {"t": team, "ts": ts},
        )
        return str(row.scalar_one())


async def chroma_kind(archive: Archive, team: str, key: str) -> object:
    collection = await archive._collection(team, create=False)
    assert collection is not None
    (record,) = await collection.get([key])
    return record.metadata["channel_type"]


async def test_a_channel_made_private_leaves_public_search_at_once_in_both_indexes(
    archive: Archive, any_engine: AsyncEngine
) -> None:
    team = new_team()
    secret = message(team, "C0PLANS", 1, "Project Falcon's budget is two million euros")
    other = message(team, "C0OTHER", 2, "Lunch is at noon on Fridays")
    await archive.add([secret, other])
    query = "Falcon budget"
    assert secret.ts in await found(archive, team, PUBLIC_READER, query)
    assert "zpub" in (await scope_of(any_engine, team, secret.ts)).split()

    assert await archive.set_channel_type(team, "C0PLANS", "group") == 1

    assert secret.ts not in await found(archive, team, PUBLIC_READER, query)
    assert secret.ts in await found(archive, team, MEMBER, query)  # control: a member
    stored = await archive.get(team, "C0PLANS", secret.ts)
    assert stored is not None and stored.channel_type == "group"
    assert "zpub" not in (await scope_of(any_engine, team, secret.ts)).split()
    assert await chroma_kind(archive, team, secret.key) == "group"
    assert await chroma_kind(archive, team, other.key) == "channel"

    # a write made with the old kind (a backfill page read before the change) takes the new one
    late = message(team, "C0PLANS", 3, "Falcon's budget review is on Monday", kind="channel")
    await archive.add([late])
    assert late.ts not in await found(archive, team, PUBLIC_READER, query)
    stored = await archive.get(team, "C0PLANS", late.ts)
    assert stored is not None and stored.channel_type == "group"

    assert await archive.set_channel_type(team, "C0PLANS", "channel") == 2
    assert {secret.ts, late.ts} <= await found(archive, team, PUBLIC_READER, query)
    assert (await scope_of(any_engine, team, secret.ts)).split()[-1] == "zpub"
    assert await chroma_kind(archive, team, secret.key) == "channel"


async def test_a_deleted_channel_leaves_the_archive_and_is_never_written_again(
    archive: Archive,
) -> None:
    team = new_team()
    gone = message(team, "C0GONE", 1, "The Falcon contract draft is attached")
    kept = message(team, "C0OTHER", 2, "The Falcon kickoff was great")
    await archive.add([gone, kept])

    assert await archive.remove_channel(team, "C0GONE") == 1

    everyone = Audience.everyone()
    assert await found(archive, team, everyone, "Falcon contract") == {kept.ts}
    await archive.add([message(team, "C0GONE", 3, "A Falcon page read before the deletion")])
    assert await archive.count(team) == 1
    assert await archive.get(team, "C0OTHER", kept.ts) is not None  # control


async def test_an_import_records_the_current_kind_not_the_exports(archive: Archive) -> None:
    team = new_team()
    await archive.set_channel_type(team, "C0PLANS", "group")  # private since the export
    await archive.remove_channel(team, "C0GONE")  # deleted since the export
    writer = BatchWriter(archive)
    for n, channel in enumerate(("C0PLANS", "C0GONE", "C0OTHER"), start=1):
        await writer.add(message(team, channel, n, f"exported message {n}", kind="channel"))
    await writer.flush()

    planned = await archive.get(team, "C0PLANS", "1700000000.000001")
    assert planned is not None and planned.channel_type == "group"
    assert await archive.get(team, "C0GONE", "1700000000.000002") is None
    other = await archive.get(team, "C0OTHER", "1700000000.000003")
    assert other is not None and other.channel_type == "channel"  # control: nothing said of it
    await writer.add(message(team, "C0PLANS", 1, "exported message 1", kind="channel"))
    await writer.flush()
    assert writer.counts.present == 1  # the same message again is no change
