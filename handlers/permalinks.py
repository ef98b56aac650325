"""Slack permalinks built from the workspace URL, without a chat.getPermalink call per message."""

from __future__ import annotations


def permalink(
    workspace_url: str | None, channel_id: str, ts: str, thread_ts: str | None
) -> str | None:
    """`https://team.slack.com/archives/C1/p1700000000000100`, with the thread for replies."""
    if not workspace_url:
        return None
    base = workspace_url if workspace_url.endswith("/") else workspace_url + "/"
    link = f"{base}archives/{channel_id}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel_id}"
    return link
