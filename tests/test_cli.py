"""The command line: `python -m app memory show|history` reads the SQL store only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LORE_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_memory_show_and_history(tmp_path: Path) -> None:
    shown = run_cli("memory", "show", "--team", "T1", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "== persona (version 1," in shown.stdout
    assert "== org (version 1, 0/5000 characters)" in shown.stdout
    history = run_cli("memory", "history", "--team", "T1", "--label", "org", data_dir=tmp_path)
    assert history.returncode == 0, history.stderr
    assert "== v1 " in history.stdout and "create" in history.stdout
    assert not (tmp_path / "chroma").exists()
