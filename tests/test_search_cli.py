"""`python -m app search` on the imported fixture export: text, --json and --queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from app.search_cli import Query, QueryFileError, read_queries
from app.settings import Settings
from app.store_lock import StoreBusy, embedded_store_lock
from tests.test_import_export import FIXTURE, PARENT, TEAM, import_into, run_cli

RESULT_KEYS = {"channel", "ts", "thread_ts", "user", "user_name", "text", "permalink", "score"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("search")
    done = import_into(path, FIXTURE, "--domain", "acme.slack.com")
    assert "9 new" in done.stdout, done.stderr
    return path


def test_search_for_people(data_dir: Path) -> None:
    done = run_cli(
        "search", "--team", TEAM, "--k", "3", "when is the postgres upgrade", data_dir=data_dir
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    score, channel, when, author, snippet, link = lines[0].split("  ")
    assert float(score) > 0
    assert (channel, when, author) == ("#C01GENERAL", "2024-03-04 11:00", "Alice Archer")
    assert snippet.startswith("The database migration to Postgres 16")
    assert link == "https://acme.slack.com/archives/C01GENERAL/p1709550000000200"


def test_search_json(data_dir: Path) -> None:
    done = run_cli(
        "search", "--team", TEAM, "--json", "--k", "2", "is billing read-only", data_dir=data_dir
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    answer = json.loads(line)
    assert answer["query"] == "is billing read-only"
    results = answer["results"]
    assert len(results) == 2 and all(set(r) == RESULT_KEYS for r in results)
    assert {r["thread_ts"] for r in results} == {PARENT}
    assert results[0]["score"] >= results[1]["score"]


def test_search_queries_file(data_dir: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    lines = [
        {"id": 1, "query": "hiring budget freeze"},
        {"id": "dm", "query": "code review of the login page"},
        {"id": [3], "query": "did the production deploy finish"},
    ]
    text = "".join(json.dumps(q) + "\n" for q in lines) + "\nnot json\n"
    queries.write_text(text)
    done = run_cli(
        "search", "--team", TEAM, "--queries", str(queries), "--json", "--k", "1", data_dir=data_dir
    )
    assert done.returncode == 1  # a bad line is named on stderr; the others are answered
    assert "line 5: invalid JSON" in done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["id"] for a in answers] == [1, "dm", [3]]
    top = [a["results"][0] for a in answers]
    assert all(set(r) == RESULT_KEYS for r in top)
    # the admin view sees the private channel and the DM too
    assert [r["channel"] for r in top] == ["G01LEADERS", "D01ALICEBOB", "C01GENERAL"]
    assert top[2]["user"] == "B01DEPLOY" and top[2]["thread_ts"] is None
    assert (top[0]["user_name"], top[2]["user_name"]) == ("Alice Archer", "deploybot")


def test_read_queries() -> None:
    items = list(read_queries(iter(['{"id": 7, "query": "x"}', "", "[1]"])))
    assert items[0] == Query(7, "x")
    assert isinstance(items[1], QueryFileError) and "line 3" in str(items[1])


def test_refuses_to_run_beside_serve(tmp_path: Path) -> None:
    settings = Settings(lore_data_dir=tmp_path, chroma_url=None)
    with embedded_store_lock(settings, "serve"):
        done = run_cli("search", "--team", TEAM, "anything", data_dir=tmp_path)
        assert done.returncode == 3
        assert "in use by `serve` (pid " in done.stderr and "CHROMA_URL" in done.stderr
        with pytest.raises(StoreBusy, match="import-export: the embedded store"):
            with embedded_store_lock(settings, "import-export"):
                pass
    assert not (tmp_path / "chroma").exists()
    with embedded_store_lock(settings, "search"):  # free again once its holder let go
        pass


def test_search_needs_a_query(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["search", "--team", TEAM])
    assert stopped.value.code == 2 and "QUERY or --queries" in capsys.readouterr().err
