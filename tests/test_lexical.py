"""The lexical index's pure parts: query terms, thread contexts, the SQL scope of a search."""

from __future__ import annotations

from memory.audience import Audience
from memory.lexical import (
    CONTEXT_PART_CHARS,
    MAX_TERMS,
    ThreadRow,
    query_terms,
    scope_sql,
    thread_contexts,
)
from memory.messages import SearchFilters, clean_text


def test_query_terms_are_or_able_words_without_stop_words() -> None:
    assert query_terms("What did Caroline research about the adoption agencies?") == [
        "caroline",
        "research",
        "adoption",
        "agencies",
    ]
    assert query_terms("the THE The") == []
    assert query_terms('ops/staging "quoted" snake_case 7f3e9c1 ünïcode') == [
        "ops",
        "staging",
        "quoted",
        "snake",
        "case",
        "7f3e9c1",
        "ünïcode",
    ]
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_TERMS


def row(ts: str, text: str, context: str = "") -> ThreadRow:
    return ThreadRow(ts, float(ts), text, context)


def test_thread_contexts_use_parent_previous_and_next() -> None:
    rows = [row("3", "third"), row("1", "parent"), row("2", "second"), row("4", "fourth")]
    assert thread_contexts(rows, "1") == {
        "1": "second",
        "2": "parent\nthird",
        "3": "parent\nsecond\nfourth",
        "4": "parent\nthird",
    }
    assert thread_contexts([row("5", "alone")], "5") == {"5": ""}
    no_parent = thread_contexts([row("2", "a"), row("3", "b"), row("4", "c")], "1")
    assert no_parent == {"2": "b", "3": "a\nc", "4": "b"}
    long = thread_contexts([row("1", "x" * 5000), row("2", "y")], "1")
    assert long["2"] == "x" * CONTEXT_PART_CHARS


def test_scope_sql() -> None:
    sql, params, expanding = scope_sql("T1", Audience.everyone(), SearchFilters())
    assert (sql, params, expanding) == ("m.team_id = :team", {"team": "T1"}, [])
    sql, params, expanding = scope_sql("T1", Audience(frozenset({"G1"})), SearchFilters())
    assert "(m.channel_type = 'channel' OR m.channel_id IN :audience)" in sql
    assert params["audience"] == ["G1"] and expanding == ["audience"]
    sql, _, _ = scope_sql("T1", Audience(frozenset(), public=False), SearchFilters())
    assert "(1 = 0)" in sql
    sql, params, _ = scope_sql(
        "T1",
        Audience(frozenset({"G1"})),
        SearchFilters(channels=frozenset({"G1"}), user_id="U1", after=1.0, before=2.0),
    )
    assert "audience" not in params  # the filter stays inside the audience's own channels
    assert params == {"team": "T1", "channels": ["G1"], "user": "U1", "after": 1.0, "before": 2.0}


def test_clean_text_makes_text_storable_in_both_stores() -> None:
    assert clean_text("nul\x00byte") == "nul\ufffdbyte"
    assert clean_text("pair \ud83d\ude00 lone \ud83d") == "pair 😀 lone \ufffd"
