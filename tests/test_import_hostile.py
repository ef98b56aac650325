"""A hostile export: conversation names and symlinks that lead out of it, and day files too big
to read. What is refused is named; the rest is imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from app.importer.export import open_export
from app.main import open_stores
from app.settings import Settings
from tests.conftest import MODEL_DIR, ROOT
from tests.test_import_export import FIXTURE

TEAM = "T0HOSTILE"
CAP = 4096
FIXTURE_MESSAGES = 11  # the good entries of the fixture's readable day files
OUTSIDE_TEXT = "Outside the export: the payroll spreadsheet password is hunter2."


def hostile_export(tmp_path: Path) -> Path:
    """The fixture export plus `../outside` and a symlinked folder leading out of it, and a day
    file bigger than CAP; beside it, a folder `outside` the export must never read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    message = {"type": "message", "user": "U01ALICE", "text": OUTSIDE_TEXT, "ts": "1709580000.0001"}
    (outside / "2024-03-04.json").write_text(json.dumps([message]))
    root = tmp_path / "export"
    shutil.copytree(FIXTURE, root)
    channels = json.loads((root / "channels.json").read_text())
    channels += [
        {"id": "C09ESCAPE", "name": "../outside"},
        {"id": "C08ABSOLUTE", "name": str(outside)},
        {"id": "C07LINKED", "name": "linked"},
    ]
    (root / "channels.json").write_text(json.dumps(channels))
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "random" / "2024-03-06.json").symlink_to(outside / "2024-03-04.json")
    big = [
        {"type": "message", "user": "U02BOB", "text": "x" * 100, "ts": f"1709600000.{n:06d}"}
        for n in range(60)
    ]
    (root / "general" / "2024-03-07.json").write_text(json.dumps(big))
    assert (root / "general" / "2024-03-07.json").stat().st_size > CAP
    return root


def test_names_and_links_leading_out_and_big_files_are_named_and_skipped(tmp_path: Path) -> None:
    root = hostile_export(tmp_path)
    with open_export(root, max_file_bytes=CAP) as export:
        conversations = export.conversations()
        ids = {c.id for c in conversations}
        assert {"C09ESCAPE", "C08ABSOLUTE"}.isdisjoint(ids) and "C01GENERAL" in ids
        texts = [
            message["text"]
            for conversation in conversations
            for day in export.day_files(conversation)
            for message in export.messages(day)
        ]
        problems = [str(p) for p in export.problems]
    assert OUTSIDE_TEXT not in texts
    assert len(texts) == FIXTURE_MESSAGES
    assert (
        "channels.json: conversation 'C09ESCAPE' has the name '../outside', which leads outside "
        "the export; its messages were not imported"
    ) in problems
    assert any(p.startswith("channels.json: conversation 'C08ABSOLUTE'") for p in problems)
    assert "linked/: leads outside the export, not read" in problems
    assert "random/2024-03-06.json: leads outside the export, not read" in problems
    assert (
        f"general/2024-03-07.json: larger than {CAP} bytes (LORE_IMPORT_MAX_DAY_FILE_BYTES), "
        "not read"
    ) in problems


def test_a_zip_member_is_read_as_a_stream_up_to_the_cap(tmp_path: Path) -> None:
    """A member that unpacks far past the cap (a few KB compressed) is refused unread."""
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(FIXTURE.rglob("*.json")):
            archive.write(path, str(path.relative_to(FIXTURE)))
        archive.writestr("general/2024-03-08.json", "[" + " " * (64 * 1024 * 1024) + "]")
    assert export.stat().st_size < 1024 * 1024
    with open_export(export, max_file_bytes=1024 * 1024) as opened:
        general = next(c for c in opened.conversations() if c.id == "C01GENERAL")
        last = opened.day_files(general)[-1]
        assert last.path == "general/2024-03-08.json"
        assert opened.messages(last) == []
        problems = [str(p) for p in opened.problems]
    assert problems[-1] == (
        "general/2024-03-08.json: larger than 1048576 bytes (LORE_IMPORT_MAX_DAY_FILE_BYTES), "
        "not read"
    )


def run_import(data_dir: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "import-export", str(source), "--team", TEAM],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "LORE_DATA_DIR": str(data_dir),
            "LORE_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
            "LORE_LOG_LEVEL": "WARNING",
            "LORE_IMPORT_MAX_DAY_FILE_BYTES": str(CAP),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_hostile_export_imports_the_rest_and_names_what_it_refused(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    done = run_import(data_dir, hostile_export(tmp_path))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "9 new, 0 updated, 0 already present" in out  # all of the fixture's good messages
    assert "skipped (malformed) channels.json: conversation 'C09ESCAPE'" in out
    assert "skipped (malformed) linked/: leads outside the export" in out
    assert "skipped (malformed) random/2024-03-06.json: leads outside the export" in out
    assert f"skipped (malformed) general/2024-03-07.json: larger than {CAP} bytes" in out

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        lore_data_dir=data_dir,
        lore_embedding_model_dir=MODEL_DIR,
        database_url=None,
        chroma_url=None,
        redis_url=None,
    )
    stores = await open_stores(settings)
    try:
        assert await stores.archive.count(TEAM) == 9
        assert await stores.archive.get(TEAM, "C09ESCAPE", "1709580000.0001") is None
        assert await stores.archive.get(TEAM, "C07LINKED", "1709580000.0001") is None
        assert await stores.archive.get(TEAM, "C02RANDOM", "1709580000.0001") is None
    finally:
        await stores.close()
