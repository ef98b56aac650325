"""Nothing acknowledged is lost: message events are kept in the intake log before Slack's 200
and removed once archived (and, for a question, once answered); what a dead process left is
archived, and answered, by the next one to look.

Entries about one message (its arrival, edits, deletion) are removed together, once none of
them is pending: an edit archived early (kept until its message is stored) stays in the log
while its message does, and an edit applied before an older one of the same message (Slack's
deliveries arrive in any order) stays while that one does, so a restart replays both and the
newer still wins (`app.ingest`). Adopted entries are archived in order per message too, many
messages at once, each tried again with backoff (`app.retry`); one still not stored after that
stays in the log for the next process to look. An entry whose live handling gave up (`strand`)
is handled again by this process (replayed, or the job that failed run again) every
`adopt_every` seconds until it succeeds; it stays in the log meanwhile. A workspace being
forgotten halts its replays: entries of it read before (or during) the halt are dropped, never
archived after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from app.retry import Backoff, CountsRetries, retrying
from memory.intake import Adopted, Entry, IntakeLog, Payload, Serves

log = logging.getLogger("lore.intake")

Replay = Callable[[str, Payload], Awaitable[None]]
"""Archive a kept payload of a workspace (team_id, payload); raises if it could not."""
Job = Callable[[], Awaitable[None]]

ADOPT_EVERY = 10.0
REPLAY_AT_ONCE = 16


@dataclass
class Kept:
    """A live entry of this process and whether its work is finished."""

    entry: Entry
    finished: bool = False


class Intake:
    """This process's side of the intake log: keep, finish, and adopt what others left."""

    def __init__(
        self,
        log_: IntakeLog,
        counts: CountsRetries,
        backoff: Backoff | None = None,
        adopt_every: float = ADOPT_EVERY,
    ) -> None:
        self._log = log_
        self._counts = counts
        self._backoff = backoff or Backoff()
        self._adopt_every = adopt_every
        self._open: dict[tuple[str, str], deque[Kept]] = {}
        self._unremoved: list[Entry] = []
        self._adopter: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._halted: set[str] = set()
        self._halted_at: dict[str, float] = {}
        self._replaying: dict[str, int] = {}
        self._stranded: list[tuple[Kept, float, Job | None]] = []
        self._replay_ended = asyncio.Event()

    @property
    def pending(self) -> int:
        """Entries kept by this process and not removed yet."""
        open_entries = sum(len({id(k.entry) for k in queue}) for queue in self._open.values())
        return open_entries + len(self._unremoved)

    async def keep(self, team_id: str, key: str, payload: Payload) -> Kept:
        """Write a received message event down; it survives this process once this returns."""
        kept = Kept(await self._log.append(team_id, key, payload))
        self._open.setdefault((team_id, key), deque()).append(kept)
        return kept

    def hold(self, kept: Kept) -> Kept:
        """More work on the entry of `kept` (the turn its message asks for): the entry stays
        in the log until that is `done` too, so a process that dies meanwhile leaves it."""
        held = Kept(kept.entry)
        self._open.setdefault((kept.entry.team_id, kept.entry.key), deque()).append(held)
        return held

    async def done(self, kept: Kept) -> None:
        """The work of `kept` is finished (or was never needed): remove it, once every entry
        kept about the same message is finished too."""
        kept.finished = True
        slot = (kept.entry.team_id, kept.entry.key)
        queue = self._open.get(slot)
        if queue is None or not all(other.finished for other in queue):
            return
        del self._open[slot]
        entries = {id(other.entry): other.entry for other in queue}  # a held entry is there twice
        await self._remove([*self._unremoved, *entries.values()])

    async def _remove(self, entries: list[Entry]) -> None:
        """Remove entries; those the log cannot remove now (Redis away) are tried again later."""
        self._unremoved = []
        for index, entry in enumerate(entries):
            try:
                await self._log.remove(entry)
            except (RedisError, OSError) as error:
                log.warning("could not remove %d intake entries yet: %s", len(entries), error)
                self._unremoved.extend(entries[index:])
                return

    async def halt_team(self, team_id: str) -> None:
        """The workspace is being forgotten: no entry of it read so far is archived (they are
        dropped), nor any until `resume_team`; returns once its replays under way ended."""
        self._halted.add(team_id)
        self._halted_at[team_id] = time.monotonic()
        while self._replaying.get(team_id):
            self._replay_ended.clear()
            await self._replay_ended.wait()

    def resume_team(self, team_id: str) -> None:
        self._halted.discard(team_id)

    async def recover(self, replay: Replay, serves: Serves) -> int:
        """Archive what processes that are gone left in the log; the number of entries."""
        total = 0
        read_at = time.monotonic()
        for adopted in await self._log.adopt(serves):
            try:
                total += await self._finish(adopted, replay, read_at)
            finally:
                await adopted.close()
        return total

    def _forgotten(self, team_id: str, read_at: float) -> bool:
        """Whether the workspace was halted since entries read at `read_at` were read."""
        return team_id in self._halted or self._halted_at.get(team_id, -1.0) >= read_at

    async def _replay_one(self, replay: Replay, entry: Entry, read_at: float) -> None:
        if self._forgotten(entry.team_id, read_at):
            return
        team = entry.team_id
        self._replaying[team] = self._replaying.get(team, 0) + 1
        try:
            await replay(team, entry.payload)
        finally:
            self._replaying[team] -= 1
            if not self._replaying[team]:
                del self._replaying[team]
            self._replay_ended.set()

    @property
    def stranded(self) -> int:
        """Entries whose handling gave up, waiting to be handled again (`strand`)."""
        return len(self._stranded)

    def strand(self, kept: Kept, job: Job | None = None) -> None:
        """Handling `kept` gave up for now (a store stayed away through its retries): the
        adopter runs `job` again (by default: `replay`, as for a dead process's entry) every
        `adopt_every` seconds until it succeeds."""
        self._stranded.append((kept, time.monotonic(), job))

    def keep_adopting(self, replay: Replay, serves: Serves) -> None:
        """Recover now, then (when other processes share the log) every `adopt_every` seconds,
        until `close`; meanwhile, handle what was stranded again."""
        if self._adopter is None:
            self._adopter = asyncio.create_task(
                self._adopt(replay, serves, self._adopt_every), name="intake"
            )

    async def _adopt(self, replay: Replay, serves: Serves, every: float) -> None:
        looked = False
        while not self._stopping.is_set():
            try:
                if self._log.shared or not looked:
                    looked = True
                    await self.recover(replay, serves)
                await self._handle_stranded(replay)
                if self._unremoved:
                    await self._remove(self._unremoved)
            except (RedisError, OSError) as error:
                log.warning("could not look for unarchived messages: %s", error)
            except Exception:
                log.exception("looking for unarchived messages failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), every)

    async def _handle_stranded(self, replay: Replay) -> None:
        """One more attempt at each stranded entry, in turn, until one fails (its store is
        likely still away): the rest stay stranded for the next round, the failed one last (so
        one that always fails holds up no other)."""
        stranded, self._stranded = self._stranded, []
        try:
            while stranded and not self._stopping.is_set():
                kept, at, job = stranded[0]
                if job is None:
                    await self._replay_one(replay, kept.entry, at)
                elif not self._forgotten(kept.entry.team_id, at):
                    await job()
                await self.done(kept)
                stranded.pop(0)
        except Exception as error:
            log.warning("%d received messages wait to be handled: %s", len(stranded), error)
            stranded.append(stranded.pop(0))
        finally:
            self._stranded[:0] = stranded

    async def _finish(self, adopted: Adopted, replay: Replay, read_at: float) -> int:
        entries = adopted.entries
        if not entries:
            return 0
        log.info("archiving %d received messages left by %s", len(entries), adopted.source)
        slots = asyncio.Semaphore(REPLAY_AT_ONCE)
        last: dict[tuple[str, str], asyncio.Task[None]] = {}

        async def finish(entry: Entry, before: asyncio.Task[None] | None) -> None:
            if before is not None:
                await asyncio.wait([before])
            async with slots:
                await retrying(
                    lambda: self._replay_one(replay, entry, read_at),
                    self._backoff,
                    self._counts,
                    what="archiving a received message",
                )
            await adopted.done(entry)

        tasks = []
        for entry in entries:
            slot = (entry.team_id, entry.key)
            task = asyncio.create_task(finish(entry, last.get(slot)), name="intake-replay")
            last[slot] = task
            tasks.append(task)
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            log.warning("%d left messages are not archived yet: %s", len(failed), failed[0])
        return len(entries) - len(failed)

    async def close(self) -> None:
        """Stop adopting and close the log (what is unfinished stays in it)."""
        self._stopping.set()
        if self._adopter is not None:
            self._adopter.cancel()
            await asyncio.gather(self._adopter, return_exceptions=True)
        if self._unremoved:
            await self._remove(self._unremoved)
        await self._log.close()
