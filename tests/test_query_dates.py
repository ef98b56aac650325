"""Dates named in a search query: which spans they give, and how they narrow filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memory.messages import SearchFilters
from memory.query_dates import ZONE_SLACK, Span, date_spans, dated_filters

NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday


def span(first: datetime, days: int) -> Span:
    return Span(
        (first - ZONE_SLACK).timestamp(), (first + timedelta(days=days) + ZONE_SLACK).timestamp()
    )


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def test_each_way_of_naming_a_date() -> None:
    assert date_spans("injury on 16 November, 2023?", NOW) == [span(day(2023, 11, 16), 1)]
    assert date_spans("the 3rd of Sept 2024 call", NOW) == [span(day(2024, 9, 3), 1)]
    assert date_spans("plan for May 7, 2023", NOW) == [span(day(2023, 5, 7), 1)]
    assert date_spans("notes 2024-03-05", NOW) == [span(day(2024, 3, 5), 1)]
    assert date_spans("pricing in March 2024", NOW) == [span(day(2024, 3, 1), 31)]
    assert date_spans("pricing in feb. 2024", NOW) == [span(day(2024, 2, 1), 29)]
    assert date_spans("what happened in 2024?", NOW) == [span(day(2024, 1, 1), 366)]


def test_relative_dates_count_from_now() -> None:
    assert date_spans("what did we decide yesterday", NOW) == [span(day(2026, 11, 24), 1)]
    assert date_spans("Today's standup", NOW) == [span(day(2026, 11, 25), 1)]
    assert date_spans("last  week's incident", NOW) == [span(day(2026, 11, 16), 7)]
    assert date_spans("this week", NOW) == [span(day(2026, 11, 23), 7)]
    assert date_spans("last month", NOW) == [span(day(2026, 10, 1), 31)]
    assert date_spans("last month", day(2026, 1, 10)) == [span(day(2025, 12, 1), 31)]
    assert date_spans("offsite last year", NOW) == [span(day(2025, 1, 1), 365)]


def test_no_date_no_span() -> None:
    for query in ("who owns billing?", "error 2024 in the logs", "May I?", "in 1850"):
        assert date_spans(query, NOW) == [], query


def test_an_impossible_day_counts_as_its_month() -> None:
    assert date_spans("31 February 2024", NOW) == [span(day(2024, 2, 1), 29)]


def test_a_stretch_of_text_counts_once_and_at_most_two_spans() -> None:
    assert date_spans("on 16 November 2023", NOW) == [span(day(2023, 11, 16), 1)]
    many = date_spans("1 May 2023, 2 May 2023 or 3 May 2023", NOW)
    assert many == [span(day(2023, 5, 1), 1), span(day(2023, 5, 2), 1)]


def test_dated_filters_narrow_the_given_filters() -> None:
    query = "the launch in March 2024"
    march = span(day(2024, 3, 1), 31)
    channel = SearchFilters(channels=frozenset({"C1"}))
    assert dated_filters(query, channel, NOW) == [
        SearchFilters(channels=frozenset({"C1"}), after=march.after, before=march.before)
    ]
    late = day(2024, 3, 20).timestamp()
    narrowed = dated_filters(query, SearchFilters(after=late), NOW)
    assert narrowed == [SearchFilters(after=late, before=march.before)]
    assert dated_filters(query, SearchFilters(before=day(2024, 1, 1).timestamp()), NOW) == []
    assert dated_filters("no date here", channel, NOW) == []
