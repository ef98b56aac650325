"""Search hits as the model's `search_result` blocks, whose source is the Slack permalink;
and the messages such links point to."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from memory.archive import SearchHit

MAX_RESULT_CHARS = 2000
_LINK = re.compile(r"/archives/([A-Za-z0-9]+)/p(\d{10})(\d{6})")


def linked_messages(text: str) -> list[tuple[str, str]]:
    """(channel, ts) of each message a Slack permalink in `text` points to, once each, in
    order."""
    return list(dict.fromkeys((m[1], f"{m[2]}.{m[3]}") for m in _LINK.finditer(text)))


def search_result_block(hit: SearchHit) -> dict[str, Any]:
    """One hit as a citable `search_result` content block.

    The title names the author without a `<@…>` mention (the model would copy it into the
    answer, and every quote would ping its author); the user id stays, for the `user` filter.
    A note found is shown as what it says, learned from its first source message, which is the
    block's source: an answer that uses the note cites that message.
    """
    message = hit.message
    author = message.user_name or "someone"
    if message.user_id:
        author = f"{author} (user {message.user_id})"
    title = f"{author} in <#{message.channel_id}> on {_when(message.ts)}"
    text = message.text
    if hit.note is not None:
        title = f"Note ({hit.note.id}) learned from {title}"
        text = hit.note.text + (f"\n\nFrom the message: {text}" if text else "")
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + "…"
    return {
        "type": "search_result",
        "source": message.permalink or f"slack://{message.channel_id}/{message.ts}",
        "title": title,
        "content": [{"type": "text", "text": text or "(empty message)"}],
        "citations": {"enabled": True},
    }


def source_title(hit: SearchHit) -> str:
    """How a cited message is named under an answer: author, channel link and time."""
    message = hit.message
    author = message.user_name or ("Lore" if message.is_bot else "someone")
    return f"{author} in <#{message.channel_id}> on {_when(message.ts)}"


def _when(ts: str) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
