"""Lore pings nobody who did not ask: the one rule for every text Lore posts.

Applied where text leaves Lore (a reply as streamed and as finished, its sources footer, the
`/recall` answer, App Home), whatever wrote the text: the model, a quoted message, a memory block.
- A user mention `<@U…>` (or `<@U…|label>`) becomes the person's name, in plain text, except
  for the people `allowed` to be addressed (the asker: Lore answers them).
- `<!channel>`, `<!here>`, `<!everyone>`, `<!group>`, `<!subteam^…>` and a typed `@channel`,
  `@here`, `@everyone` become `@` + a word joiner (U+2060) + the word: they read the same and
  notify no one.
Channel links `<#C…>`, links, dates (`<!date^…>`) and everything else are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

JOINER = "\u2060"
UNKNOWN = "someone"
USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
BROADCAST = re.compile(r"<!(channel|here|everyone|group)(?:\|[^>]*)?>")
SUBTEAM = re.compile(r"<!subteam\^([A-Za-z0-9]+)(?:\|([^>]*))?>")
TYPED = re.compile(r"(?<![\w@])@(channel|here|everyone)\b")
MAX_TOKEN = 200  # a `<…>` token longer than this is no mention: stream it on
TEXT_OBJECTS = ("mrkdwn", "plain_text")
_TYPED_TAIL = re.compile(r"(?<![\w@])@[a-z]{0,8}$")


def mentioned_users(text: str) -> set[str]:
    """The user ids mentioned in text."""
    return {match[1] for match in USER.finditer(text)}


def quiet(
    text: str, names: Mapping[str, str | None] | None = None, allowed: Collection[str] = ()
) -> str:
    """text that notifies nobody but the `allowed` users; mentions become `names` (or the
    mention's own label, or "someone")."""
    known = names or {}

    def user(match: re.Match[str]) -> str:
        user_id, label = match[1], match[2]
        if user_id in allowed:
            return match[0]
        return known.get(user_id) or (label.strip().lstrip("@") if label else "") or UNKNOWN

    def group(match: re.Match[str]) -> str:
        label = (match[2] or "").strip().lstrip("@")
        return f"@{JOINER}{label or 'team'}"

    text = USER.sub(user, text)
    text = BROADCAST.sub(lambda m: f"@{JOINER}{m[1]}", text)
    text = SUBTEAM.sub(group, text)
    return TYPED.sub(lambda m: f"@{JOINER}{m[1]}", text)


def quiet_blocks(value: Any, names: Mapping[str, str | None] | None = None) -> Any:
    """A copy of Block Kit (a view, blocks) whose text objects (mrkdwn and plain_text) are
    quiet; input values, which people edit, are left as they are."""
    if isinstance(value, list):
        return [quiet_blocks(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("type") in TEXT_OBJECTS and isinstance(value.get("text"), str):
        return {**value, "text": quiet(value["text"], names)}
    return {key: quiet_blocks(item, names) for key, item in value.items()}


def block_mentions(value: Any) -> set[str]:
    """The user ids mentioned in the text objects of Block Kit."""
    if isinstance(value, list):
        return set().union(*(block_mentions(item) for item in value))
    if not isinstance(value, dict):
        return set()
    if value.get("type") in TEXT_OBJECTS and isinstance(value.get("text"), str):
        return mentioned_users(value["text"])
    return set().union(*(block_mentions(item) for item in value.values()))


class HeldTail:
    """Splits streamed text where it is safe to quiet: a chunk may end inside a mention
    (`<@U0B` + `OB>`), so the unfinished tail waits for the next chunk."""

    def __init__(self) -> None:
        self._held = ""

    def push(self, chunk: str) -> str:
        """The text that can be quieted and sent now (perhaps ""); the rest is held."""
        text = self._held + chunk
        cut = len(text)
        opened = text.rfind("<")
        if opened != -1 and ">" not in text[opened:] and len(text) - opened <= MAX_TOKEN:
            cut = opened
        typed = _TYPED_TAIL.search(text[:cut])
        if typed is not None:
            cut = typed.start()
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """Whatever is held, at the end of the stream."""
        held, self._held = self._held, ""
        return held
