"""A Slack thread as the agent core sees it: its history, a status, and a streamed reply."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from app.agent.ports import PostedReply, Source, ThreadMessage
from handlers.feedback_blocks import feedback_block, with_feedback
from handlers.long_text import MESSAGE_TEXT, STREAM_CALL_TEXT, split_text
from handlers.permalinks import permalink
from handlers.quiet_text import HeldTail, mentioned_users, quiet

log = logging.getLogger("lore.slack")

Names = Callable[[str], Awaitable[str | None]]
"""A user's name by id (users.info, cached), for mentions turned into names."""

HISTORY_PAGES = 5
UPDATE_INTERVAL = 1.0
STREAM_BUFFER = 120
STREAM_PIECE = STREAM_CALL_TEXT - 2 * STREAM_BUFFER
"""Text handed to one append: with what the stream still holds, within one call's limit."""
STREAMED_MESSAGE = MESSAGE_TEXT - 1_000
"""A streamed message goes on in a new one past this (room left for a closing apology)."""
POSTED_MESSAGE = 12_000
"""A posted reply's text per message: its blocks stay within Slack's total for blocks."""


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
        names: Names | None = None,
    ) -> None:
        self._client = client
        self._team_id = team_id
        self._channel_id = channel_id
        self._thread_ts = thread_ts
        self._user_id = user_id
        self._bot_user_id = bot_user_id
        self._workspace_url = workspace_url
        self._names = names

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
            names=self._names,
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
    """Streams with chat.startStream/appendStream/stopStream; falls back to post + update.

    Every text goes out quiet (`handlers.quiet_text`): it mentions no one but the asker and
    broadcasts to no one, however the model or a quoted message wrote it.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel_id: str,
        thread_ts: str,
        team_id: str,
        user_id: str,
        workspace_url: str | None,
        names: Names | None = None,
    ) -> None:
        self._client = client
        self._channel_id = channel_id
        self._thread_ts = thread_ts
        self._team_id = team_id
        self._user_id = user_id
        self._workspace_url = workspace_url
        self._names = names
        self._tail = HeldTail()
        self._sources: tuple[Source, ...] = ()
        self._text = ""
        self._stream: AsyncChatStream | None = None
        self._streaming = True
        self._posted_ts: str | None = None
        self._last_update = 0.0
        self._streamed_chars = 0
        self._message_start = 0

    async def append(self, text: str) -> None:
        await self._emit(self._tail.push(text))

    async def _emit(self, raw: str) -> None:
        """Send quieted text on (nothing when all of it is held back for now)."""
        if not raw:
            return
        text = await self._quiet(raw)
        self._text += text
        if self._streaming:
            try:
                await self._stream_text(text)
                return
            except SlackApiError as error:
                self._give_up_streaming(error)
        await self._post_or_update(final=False)

    async def finish(self, sources: list[Source]) -> PostedReply | None:
        await self._emit(self._tail.flush())
        if not self._text.strip():
            await self._emit("I have nothing to add.")
        self._sources = tuple(sources)
        if self._streaming and self._stream is not None:
            try:
                footer = await self._quiet(sources_footer(sources, markdown=True))
                await self._stream_text(footer)
                await self._stream.stop(blocks=[feedback_block()])
                self._text += footer
                return self._posted(self._stream.ts)
            except SlackApiError as error:
                self._give_up_streaming(error)
        self._text += await self._quiet(sources_footer(sources, markdown=False))
        await self._post_or_update(final=True, buttons=True)
        return self._posted(self._posted_ts)

    async def fail(self, message: str) -> None:
        """End the reply with `message` (an apology), keeping whatever was already shown."""
        try:
            await self._emit(self._tail.flush())
        except SlackApiError:
            log.info("could not send the rest of a failed reply in %s", self._channel_id)
        message = await self._quiet(message)
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

    async def _stream_text(self, text: str) -> None:
        """Stream `text` in calls within Slack's limits; a message that is full is finished
        and the text goes on in a new streamed message of the thread."""
        for piece in split_text(text, STREAM_PIECE):
            stream = await self._open_stream()
            if self._streamed_chars and self._streamed_chars + len(piece) > STREAMED_MESSAGE:
                await stream.stop()
                self._stream, self._streamed_chars = None, 0
                stream = await self._open_stream()
            await stream.append(markdown_text=piece)
            self._streamed_chars += len(piece)

    async def _post_or_update(self, *, final: bool, buttons: bool = False) -> None:
        """Show the text not yet in a finished message: in this message while it fits, going
        on in new messages of the thread; the last one gets the feedback buttons if `buttons`."""
        pieces = split_text(self._text[self._message_start :], POSTED_MESSAGE) or [""]
        for piece in pieces[:-1]:
            await self._write(piece, final=True)
            self._message_start += len(piece)
            self._posted_ts = None
        last = pieces[-1]
        await self._write(last, final=final, blocks=with_feedback(last) if buttons else None)

    async def _write(
        self, text: str, *, final: bool, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        if self._posted_ts is None:
            response = await self._client.chat_postMessage(
                channel=self._channel_id,
                thread_ts=self._thread_ts,
                text=text or "…",
                blocks=blocks,
            )
            self._posted_ts = str(response["ts"])
            self._last_update = time.monotonic()
        elif final or time.monotonic() - self._last_update >= UPDATE_INTERVAL:
            await self._client.chat_update(
                channel=self._channel_id, ts=self._posted_ts, text=text, blocks=blocks
            )
            self._last_update = time.monotonic()

    def _posted(self, ts: str | None) -> PostedReply | None:
        if ts is None:
            return None
        link = permalink(self._workspace_url, self._channel_id, ts, self._thread_ts)
        return PostedReply(ts=ts, text=self._text, permalink=link, sources=self._sources)

    async def _quiet(self, text: str) -> str:
        """text mentioning no one but the asker, others named (see `handlers.quiet_text`)."""
        names: dict[str, str | None] = {}
        if self._names is not None:
            for user_id in mentioned_users(text) - {self._user_id}:
                names[user_id] = await self._names(user_id)
        return quiet(text, names, allowed={self._user_id})


def sources_footer(sources: list[Source], *, markdown: bool) -> str:
    """The sources as links under the answer, in markdown (streams) or mrkdwn (plain posts)."""
    if not sources:
        return ""
    if markdown:
        lines = [f"• {source.title}: [view message]({source.permalink})" for source in sources]
    else:
        lines = [f"• {source.title}: <{source.permalink}|view message>" for source in sources]
    return "\n\n*Sources*\n" + "\n".join(lines)
