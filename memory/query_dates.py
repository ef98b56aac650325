"""Dates a query names ("on 16 November, 2023", "in March 2024", "2024-03-05", "last week"),
as time spans, so search can also look within them.

A named day is widened by `ZONE_SLACK` on both sides: messages are stamped in UTC, and the
asker's day may start and end up to 14 hours either side of it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from memory.messages import SearchFilters

ZONE_SLACK = timedelta(hours=14)
MAX_SPANS = 2

_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name} | {"sept": 9}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"((?:19|20)\d\d)"


@dataclass(frozen=True)
class Span:
    """A half-open time span in unix seconds."""

    after: float
    before: float


def _days(first: datetime, count: int) -> Span:
    return Span(
        (first - ZONE_SLACK).timestamp(),
        (first + timedelta(days=count) + ZONE_SLACK).timestamp(),
    )


def _month(year: int, month: int) -> Span:
    return _days(datetime(year, month, 1, tzinfo=UTC), calendar.monthrange(year, month)[1])


def _year(year: int) -> Span:
    first = datetime(year, 1, 1, tzinfo=UTC)
    return _days(first, (datetime(year + 1, 1, 1, tzinfo=UTC) - first).days)


def _day(year: int, month: int, day: int) -> Span:
    return _days(datetime(year, month, day, tzinfo=UTC), 1)


def _relative(word: str, today: datetime) -> Span:
    """today, yesterday, this/last week (Monday first), this/last month, this/last year."""
    monday = today - timedelta(days=today.weekday())
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    spans: dict[str, Callable[[], Span]] = {
        "today": lambda: _days(today, 1),
        "yesterday": lambda: _days(today - timedelta(days=1), 1),
        "this week": lambda: _days(monday, 7),
        "last week": lambda: _days(monday - timedelta(days=7), 7),
        "this month": lambda: _month(today.year, today.month),
        "last month": lambda: _month(last_month.year, last_month.month),
        "this year": lambda: _year(today.year),
        "last year": lambda: _year(today.year - 1),
    }
    return spans[word]()


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], datetime], Span]], ...] = (
    (
        re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"),
        lambda m, _: _day(int(m[1]), int(m[2]), int(m[3])),
    ),
    (
        re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.I),
        lambda m, _: _day(int(m[3]), _MONTHS[m[2].lower()], int(m[1])),
    ),
    (
        re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),
        lambda m, _: _day(int(m[3]), _MONTHS[m[1].lower()], int(m[2])),
    ),
    (
        re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I),
        lambda m, _: _month(int(m[2]), _MONTHS[m[1].lower()]),
    ),
    (
        re.compile(rf"\b(?:in|during|of|since|from)\s+{_YEAR}\b", re.I),
        lambda m, _: _year(int(m[1])),
    ),
    (
        re.compile(r"\b(today|yesterday|(?:this|last)\s+(?:week|month|year))\b", re.I),
        lambda m, today: _relative(" ".join(m[1].lower().split()), today),
    ),
)


def date_spans(query: str, now: datetime | None = None) -> list[Span]:
    """The spans of the dates `query` names, most specific pattern first, at most MAX_SPANS.

    A stretch of text counts once, as its most specific reading that is a real date (so
    "31 February 2024" counts as February 2024).
    """
    today = (
        (now or datetime.now(UTC))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []
    for pattern, read in _PATTERNS:
        for match in pattern.finditer(query):
            start, end = match.span()
            if any(s < end and start < e for s, e in taken):
                continue
            try:
                span = read(match, today)
            except ValueError:
                continue
            taken.append((start, end))
            if span not in spans:
                spans.append(span)
    return spans[:MAX_SPANS]


def dated_filters(
    query: str, filters: SearchFilters, now: datetime | None = None
) -> list[SearchFilters]:
    """`filters` narrowed to each date `query` names; none where a span misses the filters."""
    narrowed = []
    for span in date_spans(query, now):
        after = span.after if filters.after is None else max(filters.after, span.after)
        before = span.before if filters.before is None else min(filters.before, span.before)
        if after < before:
            narrowed.append(replace(filters, after=after, before=before))
    return narrowed
