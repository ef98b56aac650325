"""A Slack thread as the agent core sees it: its history, a status, and a streamed reply."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from app.agent.ports import PostedReply, Source, ThreadMessage
from handlers.feedback_blocks import feedback_block, with_feedback
from handlers.permalinks import permalink

log = logging.getLogger("lore.slack")

HISTORY_PAGES = 5
UPDATE_INTERVAL = 1.0
STREAM_BUFFER = 120


class SlackThread:
    """One thread of one channel, reached through the Web API."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        team_id: str,
        channel_id: str,
        thread_ts: str,
        user_id: str,
        bot_user_id: str | None,
        workspace_url: str | None,
    ) -> None:
        self._client = client
        self._team_id = team_id
        self._channel_id = channel_id
        self._thread_ts = thread_ts
        self._user_id = user_id
        self._bot_user_id = bot_user_id
        self._workspace_url = workspace_url

    async def history(self, upto_ts: str) -> list[ThreadMessage]:
        """The thread's messages up to and including `upto_ts`, oldest first."""
        messages: list[ThreadMessage] = []
        cursor: str | None = None
        for _page in range(HISTORY_PAGES):
            response = await self._client.conversations_replies(
                channel=self._channel_id, ts=self._thread_ts, limit=200, cursor=cursor
            )
            for raw in response.get("messages") or []:
                if float(raw["ts"]) <= float(upto_ts):
                    messages.append(self._thread_message(raw))
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return messages

    async def set_status(self, status: str) -> None:
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=self._channel_id, thread_ts=self._thread_ts, status=status
            )
        except SlackApiError as error:
            log.debug("setStatus not available here: %s", error.response.get("error"))

    def open_reply(self) -> SlackReply:
        return SlackReply(
            self._client,
            channel_id=self._channel_id,
            thread_ts=self._thread_ts,
            team_id=self._team_id,
            user_id=self._user_id,
            workspace_url=self._workspace_url,
        )

    def _thread_message(self, raw: dict[str, object]) -> ThreadMessage:
        user = raw.get("user")
        from_bot = bool(raw.get("bot_id")) or (user is not None and user == self._bot_user_id)
        return ThreadMessage(
            ts=str(raw["ts"]),
            user_id=str(user) if user else None,
            text=str(raw.get("text") or ""),
            from_bot=from_bot,
        )


class SlackReply:
    """Streams with chat.startStream/appendStream/stopStream; falls back to post + update."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel_id: str,
        thread_ts: str,
        team_id: str,
        user_id: str,
        workspace_url: str | None,
    ) -> None:
        self._client = client
        self._channel_id = channel_id
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._user_id = user_id
        self._workspace_url = workspace_url
        self._text = ""
        self._stream: AsyncChatStream | None = None
        self._streaming = True
        self._posted_ts: str | None = None
        self._last_update = 0.0

    async def append(self, text: str) -> None:
        self._text += text
        if self._streaming:
            try:
                stream = await self._open_stream()
                await stream.append(markdown_text=text)
                return
            except SlackApiError as error:
                self._give_up_streaming(error)
        await self._post_or_update(final=False)

    async def finish(self, sources: list[Source]) -> PostedReply | None:
        if not self._text.strip():
            await self.append("I have nothing to add.")
        if self._streaming and self._stream is not None:
            try:
                footer = sources_footer(sources, markdown=True)
                await self._stream.stop(markdown_text=footer or None, blocks=[feedback_block()])
                self._text += footer
                return self._posted(self._stream.ts)
            except SlackApiError as error:
                self._give_up_streaming(error)
        self._text += sources_footer(sources, markdown=False)
        await self._post_or_update(final=True, blocks=with_feedback(self._text))
        return self._posted(self._posted_ts)

    async def fail(self, message: str) -> None:
        """End the reply with `message` (an apology), keeping whatever was already shown."""
        if self._stream is not None and self._streaming:
            try:
                await self._stream.stop(markdown_text=f"\n\n{message}")
                return
            except SlackApiError as error:
                self._give_up_streaming(error)
        self._text = f"{self._text}\n\n{message}" if self._text.strip() else message
        try:
            await self._post_or_update(final=True)
        except SlackApiError:
            log.exception("could not post the failure message in %s", self._channel_id)

    async def _open_stream(self) -> AsyncChatStream:
        if self._stream is None:
            self._stream = await self._client.chat_stream(
                channel=self._channel_id,
                thread_ts=self._thread_ts,
                recipient_team_id=self._team_id,
                recipient_user_id=self._user_id,
                buffer_size=STREAM_BUFFER,
            )
        return self._stream

    def _give_up_streaming(self, error: SlackApiError) -> None:
        log.info("streaming failed (%s); posting and updating instead", error.response.get("error"))
        self._streaming = False
        if self._stream is not None and self._stream.ts and self._posted_ts is None:
            self._posted_ts = self._stream.ts  # already shown: update it, never post a second

    async def _post_or_update(
        self, *, final: bool, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        if self._posted_ts is None:
            response = await self._client.chat_postMessage(
                channel=self._channel_id,
                thread_ts=self._thread_ts,
                text=self._text or "…",
                blocks=blocks,
            )
            self._posted_ts = str(response["ts"])
            self._last_update = time.monotonic()
        elif final or time.monotonic() - self._last_update >= UPDATE_INTERVAL:
            await self._client.chat_update(
                channel=self._channel_id, ts=self._posted_ts, text=self._text, blocks=blocks
            )
            self._last_update = time.monotonic()

    def _posted(self, ts: str | None) -> PostedReply | None:
        if ts is None:
            return None
        link = permalink(self._workspace_url, self._channel_id, ts, self._thread_ts)
        return PostedReply(ts=ts, text=self._text, permalink=link)


def sources_footer(sources: list[Source], *, markdown: bool) -> str:
    """The sources as links under the answer, in markdown (streams) or mrkdwn (plain posts)."""
    if not sources:
        return ""
    if markdown:
        lines = [f"• {source.title}: [view message]({source.permalink})" for source in sources]
    else:
        lines = [f"• {source.title}: <{source.permalink}|view message>" for source in sources]
    return "\n\n*Sources*\n" + "\n".join(lines)
