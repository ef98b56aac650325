"""The export reader and the message conversion, in process (no model, no store)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from app.importer.convert import permalink, skip_reason, to_archived, workspace_host
from app.importer.export import Conversation, open_export
from app.importer.progress import Progress
from tests.test_import_export import FIXTURE


def test_reader_lists_conversations_and_days() -> None:
    with open_export(FIXTURE) as export:
        conversations = {c.id: c for c in export.conversations()}
        assert {c: (v.folder, v.channel_type) for c, v in conversations.items()} == {
            "C01GENERAL": ("general", "channel"),
            "C02RANDOM": ("random", "channel"),
            "G01LEADERS": ("leadership", "group"),
            "D01ALICEBOB": ("D01ALICEBOB", "im"),
            "G02MPDM": ("mpdm-alice--bob--carol-1", "mpim"),
        }
        days = export.day_files(conversations["C01GENERAL"])
        assert [d.path for d in days] == ["general/2024-03-04.json", "general/2024-03-05.json"]
        assert export.users()["U04DEPLOY"].is_bot
        assert export.unlisted_folders(list(conversations.values())) == []
        assert export.problems == []


def test_wrong_shapes_are_named_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "export"
    shutil.copytree(FIXTURE, root)
    (root / "general" / "2024-03-04.json").write_text(json.dumps({"messages": []}))
    (root / "random" / "2024-03-04.json").write_text(
        json.dumps([{"text": "no ts"}, "not an object", {"ts": "1709560000.000100", "text": "ok"}])
    )
    (root / "groups.json").write_text("{not json")
    (root / "stray").mkdir()
    with open_export(root) as export:
        conversations = export.conversations()
        assert {c.id for c in conversations} == {
            "C01GENERAL",
            "C02RANDOM",
            "D01ALICEBOB",
            "G02MPDM",
        }
        by_id = {c.id: c for c in conversations}
        general, random = (export.day_files(by_id[c])[0] for c in ("C01GENERAL", "C02RANDOM"))
        assert export.messages(general) == []
        assert [m["text"] for m in export.messages(random)] == ["ok"]
        assert export.unlisted_folders(conversations) == ["leadership", "stray"]
        problems = [str(p) for p in export.problems]
    assert problems[0].startswith("groups.json: invalid JSON")
    assert problems[1:] == [
        "general/2024-03-04.json: expected a JSON array of messages",
        "random/2024-03-04.json: 2 entries without a valid ts skipped",
    ]


def test_workspace_host_and_permalinks() -> None:
    assert workspace_host("T024BE7LD") == "t024be7ld.slack.com"
    assert workspace_host("T1", "Acme") == "acme.slack.com"
    assert workspace_host("T1", "https://acme.enterprise.slack.com/") == "acme.enterprise.slack.com"
    assert (
        permalink("a.slack.com", "C1", "1.000200", None)
        == "https://a.slack.com/archives/C1/p1000200"
    )
    assert permalink("a.slack.com", "C1", "2.000300", "1.000200") == (
        "https://a.slack.com/archives/C1/p2000300?thread_ts=1.000200&cid=C1"
    )


def test_conversion_rules() -> None:
    channel = Conversation("C1", "general", "channel", "general")
    assert skip_reason({"subtype": "channel_join", "text": "joined"}) == "channel_join"
    assert skip_reason({"subtype": "channel_topic", "text": "topic"}) == "channel_topic"
    assert skip_reason({"text": "  "}) == "empty"
    assert skip_reason({"subtype": "thread_broadcast", "text": "also sent"}) is None
    shared = {"ts": "5.000001", "user": "U1", "text": "", "files": [{"title": "Q3 plan.pdf"}]}
    assert skip_reason(shared) is None
    message = to_archived(shared, channel, "T1", "t1.slack.com", {})
    assert message.text == "[file: Q3 plan.pdf]" and message.thread_ts is None
    lone = {"ts": "6.000001", "user": "U1", "text": "hi", "thread_ts": "6.000001", "reply_count": 0}
    assert to_archived(lone, channel, "T1", "t1.slack.com", {}).thread_ts is None
    app_bot = {"ts": "7.000001", "user": "U9", "bot_id": "B9", "text": "built"}
    assert to_archived(app_bot, channel, "T1", "t1.slack.com", {}).is_bot


def test_progress_bar_text() -> None:
    sink = io.StringIO()  # not a terminal: one line per redraw
    bar = Progress(4, "importing", stream=sink, width=8)
    bar.advance(extra="10 messages")
    bar.advance(3)
    bar.close()
    assert sink.getvalue().splitlines() == [
        "importing [##......] 1/4 files, 10 messages",
        "importing [########] 4/4 files, 10 messages",
    ]
