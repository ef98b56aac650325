"""Prometheus metrics of one Lore process, in a registry of its own (served at GET /metrics).

Counted where they happen: Slack deliveries and the duplicates dropped (the Bolt middleware),
turns by outcome with their latency and model time, model tokens by kind and where follow-up
turns read their thread (the agent, as its `TurnObserver`), turns handed back (busy,
restarting), thread summary jobs by outcome. Read when Prometheus scrapes: the turn queue's
depth, the archive's backlog, memory edits and conflicts (`MemoryBlocks.counts`, so `memory/`
knows nothing of Prometheus), messages re-embedded into the current vector space
(`memory.reembed.Reembedding`), and the archive's size per workspace: one SQL count per workspace
this process has had events from, refreshed at most every ARCHIVE_REFRESH_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import anthropic
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from app.reflection.budget import BudgetStatus, tokens_of
from memory.blocks import EditCounts
from memory.notes import NoteCounts

disable_created_metrics()  # no `*_created` timestamp series beside each counter and histogram

TURN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
ARCHIVE_REFRESH_SECONDS = 60.0


class HasDepth(Protocol):
    @property
    def depth(self) -> int: ...


class HasPending(Protocol):
    @property
    def pending(self) -> int: ...


class HasEditCounts(Protocol):
    counts: EditCounts


class HasNoteCounts(Protocol):
    counts: NoteCounts


class HasReembedding(Protocol):
    embedded: int

    @property
    def running(self) -> int: ...


class CountsMessages(Protocol):
    searches_without_vectors: int

    async def count(self, team_id: str) -> int: ...


class MemoryEditCollector:
    """Memory edits, conflicts and refusals, read from the blocks store at scrape time."""

    def __init__(self, blocks: HasEditCounts) -> None:
        self._blocks = blocks

    def describe(self) -> Iterable[Metric]:
        return list(self._families(EditCounts()))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._blocks.counts))

    @staticmethod
    def _families(counts: EditCounts) -> Iterator[Metric]:
        stored = CounterMetricFamily(
            "lore_memory_edits",
            "Memory block versions written by edits, by operation",
            labels=["operation"],
        )
        for operation, count in sorted(counts.stored.items()):
            stored.add_metric([operation], count)
        yield stored
        yield CounterMetricFamily(
            "lore_memory_edit_conflicts",
            "Edits that lost a version race to another writer and were re-applied",
            value=counts.conflicts,
        )
        yield CounterMetricFamily(
            "lore_memory_edits_rejected",
            "Edits refused (text not found, ambiguous, over the limit, stale version)",
            value=counts.rejected,
        )


class NoteCollector:
    """Notes added, retracted (by why) and refused, read from the notes store at scrape time."""

    def __init__(self, notes: HasNoteCounts) -> None:
        self._notes = notes

    def describe(self) -> Iterable[Metric]:
        return list(self._families(NoteCounts()))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._notes.counts))

    @staticmethod
    def _families(counts: NoteCounts) -> Iterator[Metric]:
        yield CounterMetricFamily("lore_notes_added", "Notes stored", value=counts.added)
        retracted = CounterMetricFamily(
            "lore_notes_retracted",
            "Notes retracted, by why (retract, supersede, deletion of every source)",
            labels=["why"],
        )
        for why, count in sorted(counts.retracted.items()):
            retracted.add_metric([why], count)
        yield retracted
        yield CounterMetricFamily(
            "lore_notes_rejected",
            "Note writes refused (sources in several channels or not readable, no such note)",
            value=counts.rejected,
        )


class ReembeddingCollector:
    """Messages re-embedded into the current vector space, read at scrape time."""

    def __init__(self, reembedding: HasReembedding) -> None:
        self._reembedding = reembedding

    def describe(self) -> Iterable[Metric]:
        return list(self._families(0, 0))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._reembedding.embedded, self._reembedding.running))

    @staticmethod
    def _families(embedded: int, running: int) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "lore_archive_reembedded",
            "Archived messages embedded again because the current embedder's collection "
            "lacked them (e.g. after LORE_EMBEDDING_PRECISION changed)",
            value=embedded,
        )
        yield GaugeMetricFamily(
            "lore_archive_reembedding",
            "Workspaces whose archive is being re-embedded now",
            value=running,
        )


class LexicalOnlySearches:
    """Searches the archive answered without its vector store, read at scrape time."""

    def __init__(self, archive: CountsMessages) -> None:
        self._archive = archive

    def describe(self) -> Iterable[Metric]:
        return [self._family(0)]

    def collect(self) -> Iterable[Metric]:
        return [self._family(self._archive.searches_without_vectors)]

    @staticmethod
    def _family(value: int) -> Metric:
        return CounterMetricFamily(
            "lore_search_without_vectors",
            "Searches answered from the lexical index alone because the vector store (Chroma) "
            "could not be reached",
            value=value,
        )


class ArchiveSizes:
    """Messages archived per workspace, counted again at most every `every` seconds."""

    def __init__(self, archive: CountsMessages, gauge: Gauge, every: float) -> None:
        self._archive = archive
        self._gauge = gauge
        self._every = every
        self._teams: set[str] = set()
        self._next = 0.0

    def saw(self, team_id: str) -> None:
        if team_id not in self._teams:
            self._teams.add(team_id)
            self._next = 0.0

    async def refresh(self) -> None:
        """Count again if the last count is older than `every` (or a new workspace appeared)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        for team_id in sorted(self._teams):
            self._gauge.labels(team=team_id).set(await self._archive.count(team_id))


class LoreMetrics:
    """The metrics of one Lore; tests may run several in one process without collisions."""

    def __init__(self, archive_refresh: float = ARCHIVE_REFRESH_SECONDS) -> None:
        self.registry = CollectorRegistry()
        self._archive_refresh = archive_refresh
        registry = self.registry
        self._events = Counter(
            "lore_events_received",
            "Slack deliveries accepted by Lore (signature verified), by payload or event type",
            ["type"],
            registry=registry,
        )
        self._duplicates = Counter(
            "lore_events_duplicate",
            "Deliveries dropped as duplicates: Slack retries, and app_mention + message of one "
            "message",
            ["type"],
            registry=registry,
        )
        self._acked_early = Counter(
            "lore_events_acked_early",
            "Message events answered 200 once written to the intake, before Bolt handled them",
            registry=registry,
        )
        self._turns = Counter(
            "lore_turns",
            "Turns by outcome: answered, failed, or handed back (busy, restarting)",
            ["outcome"],
            registry=registry,
        )
        self._turn_seconds = Histogram(
            "lore_turn_seconds",
            "Time of a whole turn, from the agent taking it to the reply stored",
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self._model_seconds = Histogram(
            "lore_turn_model_seconds",
            "Time a turn spent waiting on the model API, over all its steps",
            buckets=TURN_BUCKETS,
            registry=registry,
        )
        self._archive_messages = Gauge(
            "lore_archive_messages",
            f"Messages in a workspace's archive (counted at most every {archive_refresh:g} s, "
            "for workspaces this process had events from)",
            ["team"],
            registry=registry,
        )
        self._archive_deferred = Counter(
            "lore_archive_deferred",
            "Live messages not queued for archiving because their workspace's backlog was "
            "full; their channels are read again from history",
            registry=registry,
        )
        self._model_tokens = Counter(
            "lore_model_tokens",
            "Model tokens by kind: input (uncached), output, cache_read, cache_creation",
            ["kind"],
            registry=registry,
        )
        self._thread_reads = Counter(
            "lore_thread_reads",
            "Follow-up turns' thread histories by source: archive, or slack "
            "(conversations.replies, where the archive cannot vouch for the whole thread)",
            ["source"],
            registry=registry,
        )
        self._thread_summaries = Counter(
            "lore_thread_summaries",
            "Thread summary jobs by outcome: made, current (nothing to condense), busy (another "
            "process summarises the thread), unvouched (the archive lacks the thread), raced, "
            "stale (a condensed message changed meanwhile), failed",
            ["outcome"],
            registry=registry,
        )
        self._archive_retries = Counter(
            "lore_archive_retries",
            "Archive attempts that failed (a store away) and were tried again after a wait",
            registry=registry,
        )
        self._archive_retry_wait = Counter(
            "lore_archive_retry_wait_seconds",
            "Seconds of backoff waited before archive attempts were tried again",
            registry=registry,
        )
        self._archive_retrying = Gauge(
            "lore_archive_retrying",
            "Archive jobs waiting for a store to come back (failed at least once, not through)",
            registry=registry,
        )
        self._handled = Counter(
            "lore_events_handled",
            "Deliveries whose Bolt listener has finished (work it queued may still be running)",
            ["type"],
            registry=registry,
        )
        self._reflection_calls = Counter(
            "lore_reflection_calls",
            "Reflection model calls by outcome: ok, or failed (retried at a later pass)",
            ["outcome"],
            registry=registry,
        )
        self._reflection_tokens = Counter(
            "lore_reflection_tokens",
            "Model tokens reflection spent (input, cache read and written, and output)",
            registry=registry,
        )
        self._reflection_over_budget = Gauge(
            "lore_reflection_over_budget",
            "1 while a workspace's reflection has spent its LORE_REFLECT_TOKENS_PER_DAY for "
            "today (it has stopped until the next UTC day), else 0",
            ["team"],
            registry=registry,
        )
        self._archive_sizes: ArchiveSizes | None = None
        self._listeners_started = 0
        self._handled_total = 0
        self._work_sources: tuple[Callable[[], int], ...] = ()

    def event_received(self, kind: str, team_id: str | None) -> None:
        self._events.labels(type=kind).inc()
        if team_id and self._archive_sizes is not None:
            self._archive_sizes.saw(team_id)

    def event_duplicate(self, kind: str) -> None:
        self._duplicates.labels(type=kind).inc()

    def event_acked_early(self) -> None:
        """A message event was answered as soon as it was written down (`handlers.early_ack`)."""
        self._acked_early.inc()

    def listener_started(self) -> None:
        """A delivery's listener began (Bolt's listener start handler)."""
        self._listeners_started += 1

    def event_handled(self, kind: str) -> None:
        """A delivery's listener finished (Bolt's listener completion handler)."""
        self._handled.labels(type=kind).inc()
        self._handled_total += 1

    @property
    def listeners_running(self) -> int:
        """Listeners begun and not finished yet."""
        return self._listeners_started - self._handled_total

    def watch_work(self, *sources: Callable[[], int]) -> None:
        """Publish `lore_work_pending`: listeners running plus what each source counts (turns,
        background jobs, messages being archived or re-embedded); 0 means this process is idle
        (call once)."""
        self._work_sources = sources
        Gauge(
            "lore_work_pending",
            "Work under way in this process: listeners running, turns queued or running, "
            "background jobs, messages being archived or re-embedded (0 when idle)",
            registry=self.registry,
        ).set_function(self.work_pending)

    def work_pending(self) -> int:
        """`lore_work_pending` now: 0 when this process is idle."""
        return self.listeners_running + sum(source() for source in self._work_sources)

    def turn_finished(self, outcome: str, seconds: float, model_seconds: float | None) -> None:
        """A turn the agent ran (the agent's `TurnObserver`)."""
        self._turns.labels(outcome=outcome).inc()
        self._turn_seconds.observe(seconds)
        if model_seconds is not None:
            self._model_seconds.observe(model_seconds)

    def model_tokens(self, usage: anthropic.types.Usage) -> None:
        """One model request's usage (the agent's `TurnObserver`)."""
        self._model_tokens.labels(kind="input").inc(usage.input_tokens)
        self._model_tokens.labels(kind="output").inc(usage.output_tokens)
        self._model_tokens.labels(kind="cache_read").inc(usage.cache_read_input_tokens or 0)
        written = usage.cache_creation_input_tokens or 0
        self._model_tokens.labels(kind="cache_creation").inc(written)

    def reflection_call(self, outcome: str, usage: anthropic.types.Usage | None) -> None:
        """One reflection model call (the reflection's `ReflectionObserver`)."""
        self._reflection_calls.labels(outcome=outcome).inc()
        if usage is not None:
            self._reflection_tokens.inc(tokens_of(usage))

    def reflection_budget(self, team_id: str, status: BudgetStatus) -> None:
        """A workspace's reflection spend today, after a call or when found over budget."""
        self._reflection_over_budget.labels(team=team_id).set(1 if status.over else 0)

    def thread_read(self, source: str) -> None:
        """Where a follow-up turn read its thread (the agent's `TurnObserver`)."""
        self._thread_reads.labels(source=source).inc()

    def thread_summarised(self, outcome: str) -> None:
        """A thread summary job ended (`app.thread_summaries.Summariser`'s observer)."""
        self._thread_summaries.labels(outcome=outcome).inc()

    def turn_handed_back(self, reason: str) -> None:
        """A turn that did not run: "busy" (its workspace's queue was full) or "restarting"."""
        self._turns.labels(outcome=reason).inc()

    def archive_deferred(self) -> None:
        """A live message left to a re-read of its channel (`ArchiveQueue`)."""
        self._archive_deferred.inc()

    def archive_retry_waiting(self, seconds: float, first: bool) -> None:
        """An archive attempt failed; the next one starts in `seconds` (`app.retry`)."""
        self._archive_retries.inc()
        self._archive_retry_wait.inc(seconds)
        if first:
            self._archive_retrying.inc()

    def archive_retry_done(self) -> None:
        """Archive work that had failed is through, or given up for now."""
        self._archive_retrying.dec()

    def watch(
        self,
        *,
        turns: HasDepth,
        ingest: HasPending,
        blocks: HasEditCounts,
        archive: CountsMessages,
    ) -> None:
        """Read these services' state at every scrape (call once)."""
        Gauge(
            "lore_turn_queue_depth",
            "Turns queued or running, over every workspace",
            registry=self.registry,
        ).set_function(lambda: turns.depth)
        Gauge(
            "lore_archive_pending",
            "Messages received and not yet archived",
            registry=self.registry,
        ).set_function(lambda: ingest.pending)
        self.registry.register(MemoryEditCollector(blocks))
        self.registry.register(LexicalOnlySearches(archive))
        self._archive_sizes = ArchiveSizes(archive, self._archive_messages, self._archive_refresh)

    def watch_notes(self, notes: HasNoteCounts) -> None:
        """Read the notes store's counts at every scrape (call once)."""
        self.registry.register(NoteCollector(notes))

    def watch_reembedding(self, reembedding: HasReembedding) -> None:
        """Read the re-embedding's counts at every scrape (call once)."""
        self.registry.register(ReembeddingCollector(reembedding))

    def watch_intake(self, intake: HasPending) -> None:
        """Read the intake's unfinished entries at every scrape (call once)."""
        Gauge(
            "lore_intake_pending",
            "Message events this process acknowledged and has not archived yet",
            registry=self.registry,
        ).set_function(lambda: intake.pending)

    async def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format `accept` asks for, and its content type."""
        if self._archive_sizes is not None:
            await self._archive_sizes.refresh()
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
