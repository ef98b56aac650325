"""The memory-edit rule (memory/edits.py): each edit's effect and each refusal."""

from __future__ import annotations

import pytest

from memory.edits import EditError, Forget, Insert, Replace, Rethink, apply_edit, short_diff


def test_insert_appends_or_places_a_line() -> None:
    assert apply_edit("", Insert("a"), 100) == "a"
    assert apply_edit("a\nc", Insert("b", line=1), 100) == "a\nb\nc"
    assert apply_edit("a", Insert("z", line=0), 100) == "z\na"


def test_insert_refuses_empty_text_and_bad_line() -> None:
    with pytest.raises(EditError, match="empty"):
        apply_edit("a", Insert("  "), 100)
    with pytest.raises(EditError, match="out of range"):
        apply_edit("a", Insert("b", line=5), 100)


def test_replace_needs_exactly_one_occurrence() -> None:
    assert apply_edit("on-call: Bob", Replace("Bob", "Carol"), 100) == "on-call: Carol"
    with pytest.raises(EditError, match="not found"):
        apply_edit("on-call: Bob", Replace("Dave", "Carol"), 100)
    with pytest.raises(EditError, match="2 times"):
        apply_edit("Bob and Bob", Replace("Bob", "Carol"), 100)


def test_rethink_replaces_everything_and_limit_is_enforced() -> None:
    assert apply_edit("old", Rethink("new"), 100) == "new"
    with pytest.raises(EditError, match="over its limit of 10"):
        apply_edit("", Rethink("x" * 11), 10)
    with pytest.raises(EditError, match="limit"):
        apply_edit("123456789", Insert("more"), 10)


def test_forget_removes_the_single_matching_line() -> None:
    assert apply_edit("a: 1\nb: 2", Forget("B:"), 100) == "a: 1"
    with pytest.raises(EditError, match="no line"):
        apply_edit("a: 1", Forget("zzz"), 100)
    with pytest.raises(EditError, match="2 lines"):
        apply_edit("x1\nx2", Forget("x"), 100)


def test_short_diff_shows_the_change() -> None:
    diff = short_diff("a\nb", "a\nc", "org")
    assert "-b" in diff and "+c" in diff
    assert short_diff("same", "same", "org") == "(no change)"
