"""One agent turn: context in, a tool loop with the model, the reply streamed into the thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anthropic

from app import log_context
from app.agent import prompt
from app.agent.access import ASK_IN_A_DM, THIN_RESULTS, Access
from app.agent.ports import PostedReply, Reply, Source, Thread, ThreadMessage, TurnRequest
from app.agent.retrieval_only import RetrievalOnly
from app.agent.tools import ToolRunner
from app.askers import Askers
from app.ingest import Ingest
from app.thread_history import ArchivedHistory
from app.thread_summaries import Summariser
from memory.archive import Archive, ArchivedMessage
from memory.blocks import MemoryBlocks
from memory.conversations import Conversations
from memory.notes import Notes
from memory.reply_sources import Quote
from memory.summaries import ThreadSummary

log = logging.getLogger("lore.turn")

THINKING = "is thinking…"
APOLOGY = (
    "Sorry, I couldn't finish that answer: the language model did not respond properly "
    "({reason}). Nothing was changed in my memory by the failed step. Please try again in a moment."
)
FAILURE = "Sorry, something went wrong on my side while answering. Please try again."

AccessSource = Callable[[], Awaitable[Access]]
"""Builds the turn's access value; called once, only when Lore answers."""


@dataclass(frozen=True)
class TurnLimits:
    model: str
    max_steps: int
    max_tokens: int
    history_tokens: int


class TurnObserver(Protocol):
    """Told how each turn ended and how long it took (the metrics)."""

    def turn_finished(self, outcome: str, seconds: float, model_seconds: float | None) -> None:
        """`outcome` is "answered" or "failed"; `model_seconds` is None without a model."""

    def model_tokens(self, usage: anthropic.types.Usage) -> None:
        """The tokens one model request used (input, output, cache read and written)."""

    def thread_read(self, source: str) -> None:
        """A follow-up turn read its thread from "archive" or "slack"."""


class _Unobserved:
    def turn_finished(self, outcome: str, seconds: float, model_seconds: float | None) -> None:
        del outcome, seconds, model_seconds

    def model_tokens(self, usage: anthropic.types.Usage) -> None:
        del usage

    def thread_read(self, source: str) -> None:
        del source


@dataclass
class ModelClock:
    """Time a turn spent waiting on the model API (not on Slack while streaming)."""

    seconds: float = 0.0
    _since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None


class Agent:
    """The workspace agent: runs turns with the model, or retrieval-only without one."""

    def __init__(
        self,
        *,
        llm: anthropic.AsyncAnthropic | None,
        limits: TurnLimits,
        archive: Archive,
        blocks: MemoryBlocks,
        conversations: Conversations,
        askers: Askers,
        ingest: Ingest,
        observer: TurnObserver | None = None,
        is_excluded: Callable[[str, str], Awaitable[bool]] | None = None,
        archived_history: ArchivedHistory | None = None,
        summariser: Summariser | None = None,
        notes: Notes | None = None,
    ) -> None:
        self._llm = llm
        self._summariser = summariser
        self._archived_history = archived_history
        self._is_excluded = is_excluded or _never_excluded
        self._observer: TurnObserver = observer or _Unobserved()
        self._limits = limits
        self._archive = archive
        self._blocks = blocks
        self._conversations = conversations
        self._ingest = ingest
        self._askers = askers
        self._tools = ToolRunner(archive, blocks, notes, ingest.archived)
        self._retrieval_only = RetrievalOnly(archive, blocks)

    @property
    def retrieval_only(self) -> bool:
        return self._llm is None

    async def close(self) -> None:
        if self._llm is not None:
            await self._llm.close()

    async def run(
        self, request: TurnRequest, thread: Thread, *, mentioned: bool, access: AccessSource
    ) -> None:
        """Answer `request` if it is for Lore; never raises, the user sees a readable message.

        Lore answers a mention, any DM, and any later message of a thread it has replied in.
        `access` builds the turn's access value, once Lore knows it answers.
        Log lines written meanwhile carry the team and the conversation (channel, thread).
        """
        with log_context.bound(
            team=request.team_id, channel=request.channel_id, thread_ts=request.thread_ts
        ):
            await self._run(request, thread, mentioned=mentioned, access=access)

    async def _run(
        self, request: TurnRequest, thread: Thread, *, mentioned: bool, access: AccessSource
    ) -> None:
        started = time.perf_counter()
        if not may_be_for_lore(request.channel_type, request.ts, request.thread_ts, mentioned):
            return
        conversation = await self._askers.conversation_to_answer(
            request.team_id,
            request.channel_id,
            request.thread_ts,
            mentioned=mentioned,
            direct=request.channel_type == "im",
        )
        if conversation is None:
            return
        clock = ModelClock()
        outcome = "failed"
        try:
            outcome = await self._answer(request, access, thread, conversation.id, clock)
        finally:
            seconds = time.perf_counter() - started
            model_seconds = None if self._llm is None else clock.seconds
            self._observer.turn_finished(outcome, seconds, model_seconds)
            log.debug("turn %s in %.3f s (model %.3f s)", outcome, seconds, clock.seconds)

    async def _answer(
        self,
        request: TurnRequest,
        access_source: AccessSource,
        thread: Thread,
        conversation_id: str,
        clock: ModelClock,
    ) -> str:
        """Write the reply, or an apology when the model or a tool fails; the outcome."""
        await thread.set_status(THINKING)
        reply = thread.open_reply()
        outcome = "answered"
        try:
            access = await access_source()
            if self._llm is None:
                posted = await self._retrieval_only.answer(request, access, reply, conversation_id)
            else:
                posted = await self._model_turn(
                    self._llm, request, access, thread, reply, conversation_id, clock
                )
        except anthropic.APIError as error:
            log.warning("model call failed in %s: %s", conversation_id, _reason(error))
            await reply.fail(APOLOGY.format(reason=_reason(error)))
            posted, outcome = None, "failed"
        except Exception:
            log.exception("turn failed in %s", conversation_id)
            await reply.fail(FAILURE)
            posted, outcome = None, "failed"
        await self._conversations.record_reply(conversation_id, request.ts)
        if posted is not None:
            await self._archive_reply(request, posted)
        return outcome

    async def _model_turn(
        self,
        llm: anthropic.AsyncAnthropic,
        request: TurnRequest,
        access: Access,
        thread: Thread,
        reply: Reply,
        conversation_id: str,
        clock: ModelClock,
    ) -> PostedReply | None:
        history = await self._history(request, thread)
        fit = prompt.fit_thread(history, request, self._limits.history_tokens)
        if fit.omitted:  # the thread does not fit whole: its older part may be summarised
            summary = await self._summary(request)
            if summary is not None:
                fit = prompt.fit_thread(history, request, self._limits.history_tokens, summary)
        blocks = await self._blocks.current(request.team_id, access.memory)
        system = prompt.system_blocks(blocks, channel_only=access.channel_only)
        messages = prompt.render_thread(fit, self._limits.history_tokens)
        tools = self._tools.for_turn(request, access, conversation_id)
        offered: dict[str, Source] = {}
        cited: dict[str, Source] = {}
        asked = len(messages) - 1
        for step in range(self._limits.max_steps):
            clock.start()
            try:
                async with llm.messages.stream(
                    model=self._limits.model,
                    max_tokens=self._limits.max_tokens,
                    system=system,  # type: ignore[arg-type]
                    messages=prompt.with_cache_breakpoints(  # type: ignore[arg-type]
                        messages, asked=asked, step=step
                    ),
                    tools=self._tools.tools,  # type: ignore[arg-type]
                ) as stream:
                    async for text in stream.text_stream:
                        clock.stop()
                        await reply.append(text)
                        clock.start()
                    message = await stream.get_final_message()
            finally:
                clock.stop()
            self._observer.model_tokens(message.usage)
            _collect_citations(message, offered, cited)
            tool_uses = [block for block in message.content if block.type == "tool_use"]
            if message.stop_reason != "tool_use" or not tool_uses:
                break
            messages.append({"role": "assistant", "content": _as_params(message.content)})
            results = []
            for block in tool_uses:
                outcome = await tools.run(block.name, block.input)
                offered.update({s.permalink: s for s in outcome.sources})
                results.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": block.id,
                        "content": outcome.content,
                        "is_error": outcome.is_error,
                    }
                )
            messages.append({"role": "user", "content": results})
        else:
            await reply.append("\n\n_(I stopped after the maximum number of steps.)_")
        if access.suggests_dm and tools.searches and tools.found < THIN_RESULTS:
            await reply.append(f"\n\n{ASK_IN_A_DM}")
        posted = await reply.finish(list(cited.values()))
        if fit.wants_summary and self._summariser is not None:
            self._summariser.request(
                request.team_id, request.channel_id, request.thread_ts, request.ts
            )
        return posted

    async def _summary(self, request: TurnRequest) -> ThreadSummary | None:
        """This thread's summary of its older part, if one was made (`app.thread_summaries`)."""
        if self._summariser is None:
            return None
        try:
            return await self._summariser.current(
                request.team_id, request.channel_id, request.thread_ts
            )
        except Exception:
            log.warning("could not read the thread's summary; the thread is cut to the budget")
            return None

    async def _history(self, request: TurnRequest, thread: Thread) -> list[ThreadMessage]:
        """The thread before the asked message: from the archive where it holds all of it
        (`app.thread_history`), else (or when the archive fails) from Slack."""
        if request.ts == request.thread_ts:
            return []  # a message that starts its thread has nothing before it
        if self._archived_history is not None:
            try:
                stored = await self._archived_history.history(
                    request.team_id, request.channel_id, request.thread_ts, request.ts
                )
            except Exception:
                log.warning("could not read the thread from the archive; asking Slack")
                stored = None
            if stored is not None:
                self._observer.thread_read("archive")
                return stored
        self._observer.thread_read("slack")
        return await thread.history(request.ts)

    async def _archive_reply(self, request: TurnRequest, posted: PostedReply) -> None:
        """Store the reply in the archive, batched with other messages (see `Ingest`), with
        the messages it quoted; not in a channel an admin excluded from the archive."""
        try:
            if await self._is_excluded(request.team_id, request.channel_id):
                return
            quotes = [
                Quote(source.channel_id, source.ts, source.quoted)
                for source in posted.sources
                if source.channel_id and source.ts
            ]
            reply = ArchivedMessage.lore_reply(
                request.team_id,
                request.channel_id,
                request.channel_type,
                posted.ts,
                posted.text,
                thread_ts=request.thread_ts,
                permalink=posted.permalink,
            )
            await self._ingest.add_reply(reply, quotes)
        except Exception:
            log.exception("could not archive Lore's reply %s", posted.ts)
            if self._archived_history is not None:
                self._archived_history.gap(request.team_id, request.channel_id, request.thread_ts)


async def _never_excluded(team_id: str, channel_id: str) -> bool:
    del team_id, channel_id
    return False


def may_be_for_lore(channel_type: str | None, ts: str, thread_ts: str, mentioned: bool) -> bool:
    """Cheap first test of whether a message asks Lore: a mention, a DM, or a thread reply.

    A thread reply without a mention is for Lore only if Lore has replied in that thread,
    which `Agent.run` checks in the conversation registry.
    """
    return mentioned or channel_type == "im" or ts != thread_ts


def _collect_citations(
    message: anthropic.types.Message, offered: dict[str, Source], cited: dict[str, Source]
) -> None:
    """The sources the answer cites, each with the text it quoted (`cited_text`)."""
    for block in message.content:
        if block.type != "text":
            continue
        for citation in block.citations or []:
            source = getattr(citation, "source", None)
            if isinstance(source, str) and source not in cited:
                title = getattr(citation, "title", None) or source
                quoted = getattr(citation, "cited_text", None)
                cited[source] = replace(
                    offered.get(source, Source(source, title)),
                    quoted=quoted if isinstance(quoted, str) else "",
                )


def _as_params(content: Sequence[anthropic.types.ContentBlock]) -> list[dict[str, Any]]:
    """The assistant's blocks as request params, as the API expects them back."""
    params: list[dict[str, Any]] = []
    for block in content:
        if block.type == "text":
            params.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            params.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    return params


def _reason(error: anthropic.APIError) -> str:
    if isinstance(error, anthropic.APITimeoutError):
        return "it timed out"
    if isinstance(error, anthropic.APIStatusError):
        if error.status_code < 400:  # an `error` event in a stream that had begun (HTTP 200)
            return _error_type(error.body) or "the answer broke off"
        return f"HTTP {error.status_code}"
    return "connection failed"


def _error_type(body: object) -> str | None:
    """The `error.type` of an API error body, e.g. "overloaded_error"."""
    inner = body.get("error") if isinstance(body, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else None
    return kind if isinstance(kind, str) else None
