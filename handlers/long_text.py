"""Cutting text that outgrows one Slack field into parts that fit, losing nothing.

Slack's limits (each in characters): a message's text 40,000; a stream call's `markdown_text`
12,000; a section's text 3,000; a plain text input 3,000.
"""

from __future__ import annotations

MESSAGE_TEXT = 40_000
STREAM_CALL_TEXT = 12_000
SECTION_TEXT = 3_000

BREAKS = ("\n\n", "\n", " ")


def split_text(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` characters that join back to exactly `text`.

    A part ends after a blank line, else a line end, else a space, found in the second half of
    the part's room; only a text with none of them there is cut mid-word. No text, no parts.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _cut(rest, limit)
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts


def _cut(text: str, limit: int) -> int:
    for mark in BREAKS:
        at = text.rfind(mark, limit // 2, limit)
        if at >= 0:
            return at + len(mark)
    return limit
