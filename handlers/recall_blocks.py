"""Block Kit for `/recall`: the short answer, the matches, and a "more" button."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.recall import RecallPage
from handlers.long_text import SECTION_TEXT, split_text
from handlers.quiet_text import mentioned_users, quiet

SNIPPET_CHARS = 300
QUESTION_CHARS = 200  # the question as echoed back
ANSWER_SECTIONS = 10  # with a page of matches and the controls, within a message's 50 blocks
ANSWER_CUT = "… _(the answer goes on: ask Lore in a thread or a DM for all of it)_"
USAGE = (
    "*Usage:* `/recall your question` — searches every conversation you can see and shows the "
    "best matching messages, only to you. Example: `/recall who owns the deploy pipeline?`"
)


def relative_date(ts: str, now: float) -> str:
    """ "just now", "5 minutes ago", "yesterday", "4 days ago", or the date for older ones."""
    seconds = max(0.0, now - float(ts))
    if seconds < 60:
        return "just now"
    for unit, size in (("minute", 60), ("hour", 3600)):
        if seconds < size * (60 if unit == "minute" else 24):
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    days = int(seconds // 86400)
    if days == 1:
        return "yesterday"
    if days < 30:
        return f"{days} days ago"
    return datetime.fromtimestamp(float(ts), UTC).strftime("on %Y-%m-%d")


def recall_blocks(
    page: RecallPage, now: float, names: Mapping[str, str | None] | None = None
) -> list[dict[str, Any]]:
    """The ephemeral answer to one `/recall` page; mentions become `names` (see `quiet`)."""
    blocks: list[dict[str, Any]] = []
    if page.answer:
        blocks += answer_sections(f"*Answer:* {_quiet(page, page.answer, names)}")
        blocks.append({"type": "divider"})
    if not page.hits:
        blocks.append(
            _section(
                f"No messages match “{_cut(page.question, QUESTION_CHARS)}”"
                + (" beyond these." if page.offset else ". Try other words, or a longer question.")
            )
        )
    for number, hit in enumerate(page.hits, start=page.offset + 1):
        message = hit.message
        snippet = " ".join(message.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS] + "…"
        author = message.user_name or ("Lore" if message.is_bot else "someone")
        header = (
            f"*{number}.* {author} in <#{message.channel_id}> · {relative_date(message.ts, now)}"
        )
        section = _section(_quiet(page, f"{header}\n>{snippet or '(no text)'}", names))
        if message.permalink:
            section["accessory"] = {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open"},
                "url": message.permalink,
                "action_id": f"recall_open_{number}",
            }
        blocks.append(section)
    if page.has_more:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "More results"},
                        "action_id": "recall_more",
                        "value": more_value(page.question, page.offset + len(page.hits)),
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Only you can see this. Searched public channels and the private "
                    "conversations you are in.",
                }
            ],
        }
    )
    return blocks


def answer_sections(text: str) -> list[dict[str, Any]]:
    """The answer in sections of at most 3,000 characters; past ANSWER_SECTIONS it is cut and
    says where to read all of it."""
    parts = split_text(text, SECTION_TEXT - len(ANSWER_CUT))
    if len(parts) > ANSWER_SECTIONS:
        parts = [*parts[: ANSWER_SECTIONS - 1], parts[ANSWER_SECTIONS - 1] + ANSWER_CUT]
    return [_section(part) for part in parts]


def recall_text(page: RecallPage, names: Mapping[str, str | None] | None = None) -> str:
    """The notification text of a `/recall` answer."""
    if page.answer:
        return _cut(_quiet(page, page.answer, names), SECTION_TEXT)
    question = _cut(page.question, QUESTION_CHARS)
    return f"{len(page.hits)} messages match “{question}”" if page.hits else "No matches"


def more_value(question: str, offset: int) -> str:
    """The "more" button's value: the question (cut to fit Slack's 2,000 chars) and offset."""
    return json.dumps({"q": question[:1500], "o": offset})


def parse_more_value(value: str) -> tuple[str, int]:
    data = json.loads(value)
    return str(data["q"]), int(data["o"])


def recall_mentions(page: RecallPage) -> set[str]:
    """The user ids mentioned in the page's answer and matches."""
    texts = [page.answer or "", *(hit.message.text for hit in page.hits)]
    return set().union(*(mentioned_users(text) for text in texts))


def _quiet(page: RecallPage, text: str, names: Mapping[str, str | None] | None) -> str:
    """text pinging no one; mentions become `names`, else the page's authors' names."""
    known = {hit.message.user_id: hit.message.user_name for hit in page.hits if hit.message.user_id}
    return quiet(text, {**known, **{k: v for k, v in (names or {}).items() if v}})


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_TEXT]}}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
