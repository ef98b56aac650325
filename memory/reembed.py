"""Re-embedding: vectors for archived messages that the current vector space's collection lacks.

Each embedder writes its own Chroma collection (`memory.archive.collection_name`), so after a
change of embedder (e.g. LORE_EMBEDDING_PRECISION), or when the Chroma data was lost, the
SQL record holds messages the dense index cannot find. This fills them in, in the background:
keys are read a page at a time, the ones without a vector are embedded in batches on the
archive's low-priority embedding thread, and written as `Archive.add` writes them. Nothing is
kept between runs: a restart finds again what is still missing. Search keeps working meanwhile,
its lexical half over every message. The workspace's notes, whose vectors are kept in SQL
with the name of their space, are embedded again first. A lease per workspace and vector space
keeps processes sharing the stores from doing the same work twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from memory.archive import Archive
from memory.locks import Lease, Leases, LocalLeases
from memory.ranking import Key

log = logging.getLogger("lore.reembed")

Serves = Callable[[str], Awaitable[bool]]
"""Whether this process serves a workspace (team_id -> bool)."""

PAGE = 512  # keys read and checked against the collection at once
BATCH = 64  # messages embedded in one run on the embedding thread


class NoteVectors(Protocol):
    """The notes store's part (`memory.notes.Notes`)."""

    async def reembed_some(self, team_id: str, limit: int) -> int:
        """Embed up to limit notes whose vector is of another space; how many."""
        ...


class Reembedding:
    """One background re-embedding per workspace whose collection lacks archived messages."""

    def __init__(
        self,
        archive: Archive,
        leases: Leases | None = None,
        notes: NoteVectors | None = None,
        *,
        page: int = PAGE,
        batch: int = BATCH,
    ) -> None:
        self._archive = archive
        self._leases: Leases = leases if leases is not None else LocalLeases()
        self._notes = notes
        self._page = max(1, page)
        self._batch = max(1, batch)
        self._tasks: dict[str, asyncio.Task[int]] = {}
        self._halted: set[str] = set()
        self._starting: asyncio.Task[None] | None = None
        self._closed = False
        self.embedded = 0
        """Messages re-embedded by this process so far."""

    @property
    def running(self) -> int:
        """Workspaces being re-embedded now."""
        return len(self._tasks)

    @property
    def pending(self) -> int:
        """Work under way: workspaces being re-embedded, and the look for them (0 when idle)."""
        looking = self._starting is not None and not self._starting.done()
        return len(self._tasks) + int(looking)

    def start_all(self, serves: Serves) -> None:
        """Re-embed, in the background, every workspace with archived messages that this
        process serves (returns at once)."""
        if self._starting is None:
            self._starting = asyncio.create_task(self._start_all(serves), name="reembed-start")

    async def _start_all(self, serves: Serves) -> None:
        try:
            teams = [team_id for team_id in await self._archive.teams() if await serves(team_id)]
        except Exception:
            log.exception("could not list the archived workspaces to re-embed")
            return
        for team_id in teams:
            self.start(team_id)

    def start(self, team_id: str) -> asyncio.Task[int] | None:
        """The workspace's re-embedding task (started unless running or halted)."""
        if self._closed or team_id in self._halted:
            return None
        task = self._tasks.get(team_id)
        if task is None:
            task = asyncio.create_task(self._guarded(team_id), name=f"reembed-{team_id}")
            self._tasks[team_id] = task
            task.add_done_callback(lambda done: self._forget(team_id, done))
        return task

    def _forget(self, team_id: str, task: asyncio.Task[int]) -> None:
        if self._tasks.get(team_id) is task:
            del self._tasks[team_id]

    async def wait(self) -> None:
        """Return once the workspaces started so far are done (for tests and tools)."""
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _guarded(self, team_id: str) -> int:
        try:
            return await self.run(team_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("re-embedding %s failed; the next start tries again", team_id)
            return 0

    async def run(self, team_id: str) -> int:
        """Re-embed the workspace's messages its collection lacks; how many were written."""
        lease = await self._leases.acquire(f"reembed:{team_id}:{self._archive.space}")
        if lease is None:
            log.info("another process is re-embedding %s", team_id)
            return 0
        try:
            return await self._run(team_id, lease)
        finally:
            await lease.release()

    async def _run(self, team_id: str, lease: Lease) -> int:
        """`run` under the lease: the notes first, then the messages (nothing when the
        collection holds as many vectors as the record has messages, else every page of keys
        checked and what lacks a vector filled)."""
        notes = 0
        while self._notes is not None and not lease.lost.is_set():
            count = await self._notes.reembed_some(team_id, self._batch)
            if count == 0:
                break
            notes += count
        if notes:
            log.info("re-embedded %d notes of %s", notes, team_id)
        total = await self._archive.count(team_id)
        present = await self._archive.vector_count(team_id)
        if present >= total:
            return 0
        log.info(
            "re-embedding %s: its collection holds %d vectors of %d archived messages",
            team_id,
            present,
            total,
        )
        started = time.monotonic()
        written = scanned = 0
        after: Key | None = None
        while not lease.lost.is_set() and (
            keys := await self._archive.key_page(team_id, after, self._page)
        ):
            after = keys[-1]
            scanned += len(keys)
            written += await self._fill(team_id, await self._archive.lacking_vectors(team_id, keys))
        if lease.lost.is_set():
            log.warning("re-embedding %s stopped: its lease passed to another process", team_id)
        log.info(
            "re-embedded %d messages of %s (%d checked) in %.1f s",
            written,
            team_id,
            scanned,
            time.monotonic() - started,
        )
        return written

    async def _fill(self, team_id: str, lacking: Sequence[Key]) -> int:
        """Write the vectors of these keys, a batch at a time; how many were written."""
        written = 0
        for start in range(0, len(lacking), self._batch):
            batch = lacking[start : start + self._batch]
            count = await self._archive.restore_vectors(team_id, batch)
            written += count
            self.embedded += count
        return written

    async def halt_team(self, team_id: str) -> None:
        """Stop the workspace's re-embedding (it is being forgotten) and start none until
        `resume_team`."""
        self._halted.add(team_id)
        task = self._tasks.get(team_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def resume_team(self, team_id: str) -> None:
        self._halted.discard(team_id)

    async def close(self) -> None:
        """Cancel every re-embedding and wait for it to end (what it wrote stays)."""
        self._closed = True
        tasks = [*self._tasks.values(), *([self._starting] if self._starting else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
