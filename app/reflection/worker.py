"""The reflection worker: every pass, for each workspace whose lease this process takes, reads
the threads gone quiet, several per model call, and applies what the model makes of them.

A pass per workspace: finish any run a stopped process left half applied; find the due threads
(`quiet`); batch them (public channels' threads together, each private conversation's alone, and
alone too each conversation people outside the organisation can read, reflected as they would
read it: without `org`; a conversation whose readers cannot be looked up waits for a later pass);
for each batch, within the day's token budget: one model call, the run stored with the threads'
new positions in one transaction, then applied (`operations`). A failed call (the API's error,
a timeout) stores nothing: its threads are read again at the next pass. Channels whose every
due thread was read move their position on.

Across processes a workspace is reflected by the holder of its lease (`reflect:<team>`, in
Redis when there is one), like backfill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic

from app.agent.access import Access
from app.reflection import prompt
from app.reflection.budget import Budget, BudgetStatus
from app.reflection.operations import Operations, ReadMessage, run_scope
from app.reflection.quiet import Busy, DueChannel, DueThread, due_channels
from memory.archive import Archive
from memory.blocks import MemoryBlocks
from memory.locks import Leases
from memory.notes import Note, Notes
from memory.reflection_state import ReflectionState, Run, ThreadRead

log = logging.getLogger("lore.reflection")

MAX_POLL = 60.0  # seconds between passes at most
RELATED_NOTES = 20  # known notes shown with a batch at most
NOTES_PER_THREAD = 5  # found by search for each thread at most
QUERY_CHARS = 1000  # of a thread's text searched for its notes


@dataclass(frozen=True)
class ReflectionLimits:
    model: str
    after: float
    tokens_per_day: int
    max_tokens: int = 2048
    threads_per_call: int = 8
    chars_per_call: int = 40_000


class ReflectionObserver(Protocol):
    """Told what reflection did (the metrics)."""

    def reflection_call(self, outcome: str, usage: anthropic.types.Usage | None) -> None:
        """One model call: "ok" or "failed", with its usage when it has one."""

    def reflection_budget(self, team_id: str, status: BudgetStatus) -> None:
        """A workspace's spend today after a call, or when a pass finds it over budget."""


class _Unobserved:
    def reflection_call(self, outcome: str, usage: anthropic.types.Usage | None) -> None:
        del outcome, usage

    def reflection_budget(self, team_id: str, status: BudgetStatus) -> None:
        del team_id, status


FindNotes = Callable[[str, Access, list[DueThread]], Awaitable[list[Note]]]
"""The known notes that may concern a batch of threads, of those the access may read."""
Outsiders = Callable[[str, str], Awaitable[bool]]
"""Whether a conversation (team_id, channel_id) has a guest or a member of another organisation,
or is shared with one (asked of Slack)."""


class Reflection:
    """Background reflection over quiet threads (see the module docstring)."""

    def __init__(
        self,
        *,
        llm: anthropic.AsyncAnthropic,
        limits: ReflectionLimits,
        state: ReflectionState,
        archive: Archive,
        blocks: MemoryBlocks,
        notes: Notes,
        leases: Leases,
        find_notes: FindNotes | None = None,
        outsiders: Outsiders | None = None,
        busy: Busy | None = None,
        observer: ReflectionObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._llm = llm
        self.limits = limits
        self.state = state
        self._archive = archive
        self._blocks = blocks
        self._notes = notes
        self._leases = leases
        self._find_notes = find_notes or _notes_of_threads(notes, archive)
        self.outsiders = outsiders
        """Set once Lore is connected to Slack; until then no conversation is reflected."""
        self._busy = busy
        self._observer: ReflectionObserver = observer or _Unobserved()
        self._clock = clock
        self.budget = Budget(state, limits.tokens_per_day)
        self.operations = Operations(state, notes, blocks)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._passes = asyncio.Condition()
        self._started = 0
        self._finished = 0
        self._running = False
        self._halted: set[str] = set()
        self._current: str | None = None

    # Lifecycle

    def start(self) -> None:
        """Run passes in the background until `close` (once)."""
        if self._task is None and not self._stop.is_set():
            self._task = asyncio.create_task(self._loop(), name="reflection")

    async def close(self) -> None:
        """Stop at once: a model call under way is dropped (nothing of it was stored)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def pending(self) -> int:
        """1 while a pass runs (the work `settled` waits for), else 0."""
        return int(self._running)

    async def next_pass(self) -> None:
        """Wait until a whole pass that starts after this call has finished (it starts now)."""
        async with self._passes:
            wanted = self._started + 1
            self._wake.set()
            await self._passes.wait_for(lambda: self._finished >= wanted)

    async def reopen(self, team_id: str, channel_id: str, thread_ts: str) -> None:
        """Send a thread back to reflection: a source of a note in it was edited."""
        await self.state.reopen(team_id, channel_id, thread_ts)

    async def halt_team(self, team_id: str) -> None:
        """Take no more of the workspace's reflection; return once its current one ended."""
        self._halted.add(team_id)
        async with self._passes:
            await self._passes.wait_for(lambda: self._current != team_id)

    def resume_team(self, team_id: str) -> None:
        self._halted.discard(team_id)

    async def delete_team(self, team_id: str) -> None:
        await self.state.delete_team(team_id)

    # Passes

    async def _loop(self) -> None:
        poll = min(MAX_POLL, max(0.05, self.limits.after / 2))
        while not self._stop.is_set():
            async with self._passes:
                self._started += 1
            self._running = True
            try:
                await self.reflect_all()
            except Exception:
                log.exception("a reflection pass failed")
            finally:
                self._running = False
                async with self._passes:
                    self._finished += 1
                    self._passes.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            self._wake.clear()

    async def reflect_all(self) -> None:
        """One pass over every workspace with archived messages."""
        for team_id in await self.state.teams():
            if self._stop.is_set():
                return
            if team_id in self._halted:
                continue
            lease = await self._leases.acquire(f"reflect:{team_id}")
            if lease is None:
                continue  # another process reflects this workspace now
            self._current = team_id
            try:
                await self.reflect_team(team_id, lease.lost)
            except Exception:
                log.exception("reflection of %s failed", team_id)
            finally:
                await asyncio.shield(lease.release())
                async with self._passes:
                    self._current = None
                    self._passes.notify_all()

    async def reflect_team(self, team_id: str, lost: asyncio.Event | None = None) -> None:
        """Finish runs left half applied, then reflect the workspace's due threads."""
        for run in await self.state.unfinished_runs(team_id):
            await self.operations.apply(run)
        busy = await self._busy(team_id) if self._busy is not None else frozenset()
        channels = await due_channels(
            self.state,
            self._archive,
            team_id,
            now=self._clock(),
            after=self.limits.after,
            busy=busy,
        )
        channels, outside = await self._readers(team_id, channels)
        read: set[tuple[str, str]] = set()
        for batch in self._batches(channels, outside):
            if (
                self._stop.is_set()
                or team_id in self._halted
                or (lost is not None and lost.is_set())
            ):
                break
            status = await self.budget.status(team_id)
            self._observer.reflection_budget(team_id, status)  # a new day clears "over"
            if status.over:
                log.info("reflection of %s stopped for today: over its token budget", team_id)
                break
            if not await self._reflect(team_id, batch, batch[0].channel_id in outside):
                break  # the model failed: the rest waits for the next pass
            read |= {(t.channel_id, t.thread_ts) for t in batch}
        await self.state.advance(
            team_id,
            {
                c.channel_id: c.position
                for c in channels
                if all((t.channel_id, t.thread_ts) in read and not t.partial for t in c.threads)
            },
        )

    async def _readers(
        self, team_id: str, channels: list[DueChannel]
    ) -> tuple[list[DueChannel], set[str]]:
        """The channels whose readers are known now, and those of them outsiders read."""
        if self.outsiders is None:
            return [], set()
        known: list[DueChannel] = []
        outside: set[str] = set()
        for channel in channels:
            try:
                if await self.outsiders(team_id, channel.channel_id):
                    outside.add(channel.channel_id)
            except Exception as error:
                log.warning(
                    "who reads %s/%s is unknown (%s); reflected at a later pass",
                    team_id,
                    channel.channel_id,
                    error,
                )
                continue
            known.append(channel)
        return known, outside

    def _batches(self, channels: list[DueChannel], outside: set[str]) -> list[list[DueThread]]:
        """Public channels' threads together; each private conversation's, and each
        conversation's that outsiders read, alone; at most `threads_per_call` threads and about
        `chars_per_call` characters per batch."""
        groups: dict[str | None, list[DueThread]] = {}
        for channel in channels:
            together = channel.channel_type == "channel" and channel.channel_id not in outside
            key = None if together else channel.channel_id
            groups.setdefault(key, []).extend(channel.threads)
        batches: list[list[DueThread]] = []
        for threads in groups.values():
            batch: list[DueThread] = []
            size = 0
            for thread in threads:
                chars = sum(len(m.text) + 80 for m in thread.messages)
                if batch and (
                    len(batch) >= self.limits.threads_per_call
                    or size + chars > self.limits.chars_per_call
                ):
                    batches.append(batch)
                    batch, size = [], 0
                batch.append(thread)
                size += chars
            if batch:
                batches.append(batch)
        return batches

    async def _reflect(self, team_id: str, batch: list[DueThread], outsiders: bool) -> bool:
        """One model call over `batch` (of one conversation when `outsiders` read it), its run
        stored and applied; False if the call failed."""
        together = batch[0].channel_type == "channel" and not outsiders
        own = None if together else batch[0].channel_id
        access = Access.for_reflection(team_id, own, outsiders=outsiders)
        blocks = await self._blocks.current(team_id, access.memory)
        known = await self._find_notes(team_id, access, batch)
        try:
            message = await self._llm.messages.create(
                model=self.limits.model,
                max_tokens=self.limits.max_tokens,
                system=prompt.system_blocks(blocks, own_channel=own, outsiders=outsiders),  # type: ignore[arg-type]
                messages=[prompt.user_message(batch, known)],  # type: ignore[list-item]
                tools=prompt.TOOLS,  # type: ignore[arg-type]
            )
        except anthropic.APIError as error:
            self._observer.reflection_call("failed", None)
            log.warning("reflection call for %s failed (%s); retried later", team_id, error)
            return False
        self._observer.reflection_call("ok", message.usage)
        self._observer.reflection_budget(team_id, await self.budget.spend(team_id, message.usage))
        operations: list[dict[str, Any]] = [
            {"name": block.name, "input": block.input}
            for block in message.content
            if block.type == "tool_use"
        ]
        read = [
            ReadMessage(m.channel_id, t.channel_type, m.ts, m.permalink)
            for t in batch
            for m in t.messages
        ]
        run = Run(
            uuid.uuid4().hex, team_id, run_scope(own, read, outsiders=outsiders), operations, 0
        )
        await self.state.record_run(
            run, [ThreadRead(t.channel_id, t.thread_ts, t.read_upto, t.reopens) for t in batch]
        )
        await self.operations.apply(run)
        return True


def _notes_of_threads(notes: Notes, archive: Archive) -> FindNotes:
    """Known notes for a batch: those citing its threads' messages, then those the search
    finds for each thread (the archive finds notes with messages), all of them notes the access
    may read."""

    async def find(team_id: str, access: Access, batch: list[DueThread]) -> list[Note]:
        found: dict[str, Note] = {}
        for thread in batch:
            for message in thread.messages:
                for note in await notes.citing(team_id, message.channel_id, message.ts):
                    if access.audience.allows(note.channel_id, note.channel_type):
                        found[note.id] = note
        for thread in batch:
            query = " ".join(m.text for m in thread.messages)[:QUERY_CHARS]
            hits = await archive.search(
                team_id, query, audience=access.audience, limit=NOTES_PER_THREAD * 3
            )
            noted = [hit.note for hit in hits if hit.note is not None]
            found.update({note.id: note for note in noted[:NOTES_PER_THREAD]})
        return list(found.values())[:RELATED_NOTES]

    return find
