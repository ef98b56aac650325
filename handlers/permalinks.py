"""Slack permalinks built from the workspace URL, without a chat.getPermalink call per message."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient


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


class WorkspaceUrls:
    """Each workspace's URL (from auth.test), looked up once per team."""

    def __init__(self) -> None:
        self._urls: dict[str, str | None] = {}

    async def of(
        self, client: AsyncWebClient, team_id: str, known: str | None = None
    ) -> str | None:
        if known:
            self._urls[team_id] = known
        if team_id not in self._urls:
            self._urls[team_id] = (await client.auth_test()).get("url")
        return self._urls[team_id]
