"""Slack export messages to archived messages: which to keep, their text and permalinks."""

from __future__ import annotations

from typing import Any

from app.importer.export import TS, Conversation, User
from memory.archive import ArchivedMessage

# Subtypes that carry content; every other one (channel_join, channel_leave, channel_topic,
# channel_purpose, pinned_item, bot_add, tombstone, ...) is workspace noise and is skipped.
CONTENT_SUBTYPES = frozenset(
    {"bot_message", "thread_broadcast", "reply_broadcast", "file_share", "me_message"}
)


def workspace_host(team_id: str, domain: str | None = None) -> str:
    """The workspace's host: `acme` or `acme.slack.com` (or a URL) given, else `{team}.slack.com`.

    Exports do not say which domain the workspace had, so without `--domain` the permalinks use
    the team id lower-cased as the subdomain, e.g. T024BE7LD -> t024be7ld.slack.com.
    """
    host = (domain or team_id).strip().lower()
    host = host.removeprefix("https://").removeprefix("http://").strip("/")
    return host if "." in host else f"{host}.slack.com"


def permalink(host: str, channel_id: str, ts: str, thread_ts: str | None) -> str:
    """`https://host/archives/C1/p1700000000000100`, with the thread's parameters for replies."""
    link = f"https://{host}/archives/{channel_id}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel_id}"
    return link


def message_text(raw: dict[str, Any]) -> str:
    """The searchable text: the message text and shared files' titles; attachments if no text."""
    text = raw.get("text") if isinstance(raw.get("text"), str) else ""
    parts = [text.strip()] if text and text.strip() else []
    if not parts:
        for attachment in _objects(raw.get("attachments")):
            fallback = attachment.get("text") or attachment.get("fallback")
            if isinstance(fallback, str) and fallback.strip():
                parts.append(fallback.strip())
    for shared in _objects(raw.get("files")):
        title = shared.get("title") or shared.get("name")
        if isinstance(title, str) and title.strip():
            parts.append(f"[file: {title.strip()}]")
    return "\n".join(parts)


def skip_reason(raw: dict[str, Any]) -> str | None:
    """Why a message is not archived (its subtype, or "empty"), or None to keep it."""
    subtype = raw.get("subtype")
    if subtype is not None and subtype not in CONTENT_SUBTYPES:
        return str(subtype)
    if not message_text(raw):
        return "empty"
    return None


def to_archived(
    raw: dict[str, Any],
    conversation: Conversation,
    team_id: str,
    host: str,
    users: dict[str, User],
) -> ArchivedMessage:
    """The archived form of a kept message (see `skip_reason`); raw["ts"] must be valid."""
    ts = str(raw["ts"])
    user = raw.get("user") if isinstance(raw.get("user"), str) else None
    bot_id = raw.get("bot_id") if isinstance(raw.get("bot_id"), str) else None
    known = users.get(user) if user else None
    is_bot = raw.get("subtype") == "bot_message" or bot_id is not None
    thread_ts = _thread_ts(raw, ts)
    return ArchivedMessage(
        team_id=team_id,
        channel_id=conversation.id,
        channel_type=conversation.channel_type,
        ts=ts,
        text=message_text(raw),
        user_id=user or bot_id,
        thread_ts=thread_ts,
        permalink=permalink(host, conversation.id, ts, thread_ts),
        is_bot=is_bot or (known is not None and known.is_bot),
        user_name=known.name if known is not None else _bot_name(raw),
    )


def _bot_name(raw: dict[str, Any]) -> str | None:
    """The name a bot or integration posted under, if the export gives one."""
    profile = raw.get("bot_profile")
    name = raw.get("username") or (profile.get("name") if isinstance(profile, dict) else None)
    return (name.strip() or None) if isinstance(name, str) else None


def _thread_ts(raw: dict[str, Any], ts: str) -> str | None:
    """The thread's ts for parents and replies; None for a message that started no thread."""
    thread_ts = raw.get("thread_ts")
    if not isinstance(thread_ts, str) or not TS.match(thread_ts):
        return None
    if thread_ts == ts and not raw.get("reply_count") and not raw.get("replies"):
        return None
    return thread_ts


def _objects(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
