"""`python -m app import-export` on a small export (tests/fixtures/slack_export), folder and ZIP.

The fixture has #general (a thread whose last reply falls on the next day, a bot message, a join
and a leave), #random (one good day, one cut-off day file), a private channel, a DM and a group DM.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.cli import main
from app.main import open_stores
from app.settings import Settings
from memory.archive import ArchivedMessage
from tests.conftest import MODEL_DIR, ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "slack_export"
TEAM = "T0FIXTURE"
BROKEN = "random/2024-03-05.json"
PARENT = "1709550000.000200"


def run_cli(
    *args: str, data_dir: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` with the embedded stores in data_dir and the local model."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "LORE_DATA_DIR": str(data_dir),
            "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
            "LORE_LOG_LEVEL": "WARNING",
        },
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def import_into(data_dir: Path, source: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("import-export", str(source), "--team", TEAM, *extra, data_dir=data_dir)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the folder fixture, imported once for the module's tests."""
    data_dir = tmp_path_factory.mktemp("imported")
    first = import_into(data_dir, FIXTURE)
    assert first.returncode == 1, first.stderr  # 1: a malformed file was skipped
    assert "9 new, 0 updated, 0 already present" in first.stdout
    assert f"skipped (malformed) {BROKEN}: invalid JSON" in first.stdout
    assert "left out 2 messages: channel_join 1, channel_leave 1" in first.stdout
    assert "7/7 files" in first.stderr  # the progress bar
    return data_dir


async def stored(data_dir: Path) -> dict[str, ArchivedMessage]:
    """Every fixture message found in the archive, by key (read after the CLI has exited)."""
    settings = Settings(
        lore_data_dir=data_dir,
        lore_embedding_model_dir=MODEL_DIR,
        database_url=None,
        chroma_url=None,
        redis_url=None,
    )
    stores = await open_stores(settings)
    try:
        keys = [
            ("C01GENERAL", "1709546400.000100"),  # join
            ("C01GENERAL", PARENT),
            ("C01GENERAL", "1709550060.000300"),
            ("C01GENERAL", "1709553600.000400"),  # bot
            ("C01GENERAL", "1709557200.000500"),
            ("C01GENERAL", "1709632800.000100"),  # reply on the next day
            ("C01GENERAL", "1709640000.000200"),  # leave
            ("C02RANDOM", "1709560000.000100"),
            ("G01LEADERS", "1709565000.000100"),
            ("D01ALICEBOB", "1709570000.000100"),
            ("G02MPDM", "1709575000.000100"),
        ]
        found = {}
        for channel, ts in keys:
            message = await stores.archive.get(TEAM, channel, ts)
            if message is not None:
                found[message.key] = message
        assert await stores.archive.count(TEAM) == len(found)
        return found
    finally:
        await stores.close()


async def test_folder_import_keeps_structure(imported: Path) -> None:
    messages = await stored(imported)
    assert len(messages) == 9
    assert "C01GENERAL:1709546400.000100" not in messages  # channel_join left out
    parent = messages[f"C01GENERAL:{PARENT}"]
    reply = messages["C01GENERAL:1709550060.000300"]
    late_reply = messages["C01GENERAL:1709632800.000100"]
    plain = messages["C01GENERAL:1709557200.000500"]
    assert parent.thread_ts == reply.thread_ts == late_reply.thread_ts == PARENT
    assert plain.thread_ts is None
    assert (parent.user_id, reply.user_id, plain.user_id) == ("U01ALICE", "U02BOB", "U03CAROL")
    names = (parent.user_name, reply.user_name, plain.user_name)
    assert names == ("Alice Archer", "Bob Baker", "Carol Chen")  # users.json's real names
    assert not parent.is_bot
    bot = messages["C01GENERAL:1709553600.000400"]
    assert bot.is_bot and bot.user_id == "B01DEPLOY" and bot.user_name == "deploybot"
    assert bot.text == "Deploy of api v2.3.1 to production finished successfully"
    types = {m.channel_id: m.channel_type for m in messages.values()}
    assert types == {
        "C01GENERAL": "channel",
        "C02RANDOM": "channel",
        "G01LEADERS": "group",
        "D01ALICEBOB": "im",
        "G02MPDM": "mpim",
    }
    assert all(m.team_id == TEAM for m in messages.values())
    host = "https://t0fixture.slack.com/archives"
    assert parent.permalink == f"{host}/C01GENERAL/p1709550000000200"
    assert reply.permalink == (
        f"{host}/C01GENERAL/p1709550060000300?thread_ts={PARENT}&cid=C01GENERAL"
    )
    assert messages["D01ALICEBOB:1709570000.000100"].permalink == (
        f"{host}/D01ALICEBOB/p1709570000000100"
    )


def test_second_import_adds_nothing(imported: Path) -> None:
    again = import_into(imported, FIXTURE)
    assert again.returncode == 1, again.stderr
    assert "0 new, 0 updated, 9 already present" in again.stdout
    assert BROKEN in again.stdout


async def test_zip_import_with_domain(tmp_path: Path) -> None:
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as archive:
        for path in sorted(FIXTURE.rglob("*.json")):  # wrapped in a top folder, as Slack may
            archive.write(path, f"Acme Slack export/{path.relative_to(FIXTURE)}")
    data_dir = tmp_path / "data"
    done = import_into(data_dir, export, "--domain", "acme")
    assert done.returncode == 1, done.stderr
    assert "9 new, 0 updated, 0 already present" in done.stdout
    assert f"skipped (malformed) {BROKEN}" in done.stdout
    messages = await stored(data_dir)
    assert len(messages) == 9
    assert messages["G01LEADERS:1709565000.000100"].permalink == (
        "https://acme.slack.com/archives/G01LEADERS/p1709565000000100"
    )


def test_not_an_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    monkeypatch.setenv("LORE_DATA_DIR", str(tmp_path / "d"))
    assert main(["import-export", str(tmp_path / "notes.txt"), "--team", TEAM]) == 2
    assert "notes.txt is not a ZIP file or folder" in capsys.readouterr().err
    assert main(["import-export", str(tmp_path / "missing"), "--team", TEAM]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert not (tmp_path / "d" / "chroma").exists()
