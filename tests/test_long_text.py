"""Cutting long text for Slack: parts within the limit that join back to the whole."""

from __future__ import annotations

import random

import pytest

from handlers.long_text import split_text


def test_parts_fit_and_join_back_exactly() -> None:
    rng = random.Random(7)
    words = ["kestrel", "deploy", "\n", "\n\n", "a" * 40, "ünïcødé", "🙂"]
    for _ in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 400)))
        limit = rng.randint(1, 500)
        parts = split_text(text, limit)
        assert "".join(parts) == text
        assert all(0 < len(part) <= limit for part in parts)


def test_cuts_after_a_blank_line_then_a_line_then_a_space() -> None:
    assert split_text("aaaa\n\nbbb\ncc dd", 8) == ["aaaa\n\n", "bbb\ncc ", "dd"]
    assert split_text("aaaaa bbbbb", 8) == ["aaaaa ", "bbbbb"]
    assert split_text("a" * 10, 4) == ["aaaa", "aaaa", "aa"]
    assert split_text("", 5) == []


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)
