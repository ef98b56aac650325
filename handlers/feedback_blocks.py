"""The helpful / not helpful buttons under Lore's replies (Block Kit feedback buttons)."""

from __future__ import annotations

from typing import Any

from memory.feedback import Verdict

ACTION_ID = "lore_feedback"
SECTION_LIMIT = 3000
MAX_BLOCKS = 50


def feedback_block() -> dict[str, Any]:
    """A context_actions block with Slack's feedback buttons (👍 helpful, 👎 not helpful)."""
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": ACTION_ID,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍"},
                    "value": Verdict.HELPFUL.value,
                    "accessibility_label": "Mark this answer as helpful",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "value": Verdict.NOT_HELPFUL.value,
                    "accessibility_label": "Mark this answer as not helpful",
                },
            }
        ],
    }


def with_feedback(text: str) -> list[dict[str, Any]]:
    """A plain post's blocks: its mrkdwn text (Slack shows blocks instead of text), then buttons."""
    sections = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in _split(text, SECTION_LIMIT)
    ]
    return [*sections[: MAX_BLOCKS - 1], feedback_block()]


def _split(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line ends where possible."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        cut = cut if cut > 0 else limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest.strip():
        parts.append(rest)
    return parts
