"""Search hits as the model's `search_result` blocks, whose source is the Slack permalink."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from memory.archive import SearchHit

MAX_RESULT_CHARS = 2000


def search_result_block(hit: SearchHit) -> dict[str, Any]:
    """One hit as a citable `search_result` content block."""
    message = hit.message
    when = datetime.fromtimestamp(float(message.ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
    author = message.user_name or "someone"
    if message.user_id:
        author = (
            f"{message.user_name} (<@{message.user_id}>)"
            if message.user_name
            else f"<@{message.user_id}>"
        )
    text = message.text
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + "…"
    return {
        "type": "search_result",
        "source": message.permalink or f"slack://{message.channel_id}/{message.ts}",
        "title": f"{author} in <#{message.channel_id}> on {when}",
        "content": [{"type": "text", "text": text or "(empty message)"}],
        "citations": {"enabled": True},
    }
