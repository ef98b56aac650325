"""Turn ordering: one at a time per conversation, in arrival order; bounded per workspace.

Every submitted turn is either run or handed back: refused when its workspace already has
`max_queued` turns waiting (busy) or when Lore is stopping (restarting), left over when the
shutdown grace runs out (restarting), or dropped because its workspace is being forgotten
(forgotten: its asker is not told).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import Enum

from app.background import finish_or_cancel
from memory.locks import ConversationLocks

log = logging.getLogger("lore.turns")

ConversationKey = tuple[str, str, str]
HAND_BACK_GRACE = 10.0


class HandBack(Enum):
    """Why a turn will not run."""

    BUSY = "busy"
    RESTARTING = "restarting"
    FORGOTTEN = "forgotten"
    """The workspace is being forgotten (uninstalled): nobody is told."""


@dataclass(frozen=True)
class Turn:
    """A turn to run, and how to tell its asker when it will not run."""

    run: Callable[[], Awaitable[None]]
    hand_back: Callable[[HandBack], Awaitable[None]]


@dataclass
class _Entry:
    turn: Turn
    started: bool = False
    finished: bool = False


class TurnQueue:
    """Serial queues keyed by (team, channel, thread_ts); a worker exists only while busy.

    With `locks` (Redis), each turn also holds its conversation's lock, so two processes never
    run turns of one thread at once.
    """

    def __init__(
        self,
        per_workspace: int,
        max_queued: int = 500,
        locks: ConversationLocks | None = None,
    ) -> None:
        self._per_workspace = per_workspace
        self._max_queued = max_queued
        self._locks = locks
        self._queues: dict[ConversationKey, deque[_Entry]] = {}
        self._queued: Counter[str] = Counter()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._telling: dict[str, asyncio.Semaphore] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._hand_backs: set[asyncio.Task[None]] = set()
        self._closed = False
        self._hurry = asyncio.Event()
        self._worker_of: dict[ConversationKey, asyncio.Task[None]] = {}
        self._halted: set[str] = set()

    def submit(self, key: ConversationKey, turn: Turn) -> bool:
        """Queue `turn` behind earlier turns of its conversation; never blocks.

        False if refused (the workspace's queue is full, or Lore is stopping); the turn is
        then handed back in the background.
        """
        team = key[0]
        if team in self._halted:
            log.info("turn of %s dropped: the workspace is being forgotten", team)
            self._hand_back(team, turn, HandBack.FORGOTTEN)
            return False
        if self._closed:
            self._hand_back(team, turn, HandBack.RESTARTING)
            return False
        if self._queued[team] >= self._max_queued:
            self._hand_back(team, turn, HandBack.BUSY)
            return False
        self._queued[team] += 1
        entry = _Entry(turn)
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(entry)
            return True
        self._queues[key] = deque([entry])
        worker = asyncio.create_task(self._work(key), name=f"turns:{':'.join(key)}")
        self._workers.add(worker)
        self._worker_of[key] = worker
        worker.add_done_callback(self._workers.discard)
        worker.add_done_callback(lambda done: self._forget_worker(key, done))
        return True

    def _forget_worker(self, key: ConversationKey, worker: asyncio.Task[None]) -> None:
        if self._worker_of.get(key) is worker:
            del self._worker_of[key]

    async def halt_team(self, team_id: str) -> None:
        """Cancel the workspace's running and queued turns (nobody is told: it is being
        uninstalled; those that never started are handed back as forgotten) and take none of
        its turns until `resume_team`; returns once they ended."""
        self._halted.add(team_id)
        keys = [key for key in self._queues if key[0] == team_id]
        queues = {key: self._queues[key] for key in keys}
        workers = [self._worker_of[key] for key in keys if key in self._worker_of]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for key, queue in queues.items():
            for entry in queue:
                if not entry.started:
                    self._dequeued(team_id)
                    self._hand_back(team_id, entry.turn, HandBack.FORGOTTEN)
            if self._queues.get(key) is queue:
                del self._queues[key]
        self._slots.pop(team_id, None)
        self._telling.pop(team_id, None)
        if workers:
            log.info("cancelled %d turns of %s, which is being forgotten", len(workers), team_id)

    def resume_team(self, team_id: str) -> None:
        """Take the workspace's turns again (after it was forgotten, e.g. for a re-install)."""
        self._halted.discard(team_id)

    @property
    def depth(self) -> int:
        """Turns queued or running, over every workspace."""
        return sum(len(queue) for queue in self._queues.values())

    @property
    def unfinished(self) -> int:
        """Turns queued or running, and askers still being told their turn was handed back."""
        return self.depth + len(self._hand_backs)

    def queued(self, team_id: str) -> int:
        """Turns of one workspace waiting to start (what `max_queued` bounds)."""
        return self._queued[team_id]

    @property
    def closed(self) -> bool:
        """True once Lore is stopping: new turns are handed back."""
        return self._closed

    def close(self) -> None:
        """Refuse new turns from now on (handed back as restarting)."""
        self._closed = True

    def hurry(self) -> None:
        """End `drain`'s grace now: what has not finished is handed back (a second signal)."""
        self._hurry.set()

    async def drain(self, grace: float = 60.0) -> None:
        """Run queued turns for up to `grace` seconds (or until `hurry`); then hand back and
        cancel the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            while (
                self._workers
                and not self._hurry.is_set()
                and (remaining := deadline - loop.time()) > 0
            ):
                await asyncio.wait(
                    {*self._workers, hurried},
                    timeout=remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            hurried.cancel()
        if self._workers:
            await self._hand_back_left_over()
        await finish_or_cancel(self._hand_backs, HAND_BACK_GRACE, "hand-backs")

    async def _hand_back_left_over(self) -> None:
        queues = dict(self._queues)
        left = [
            (key[0], entry)
            for key, queue in queues.items()
            for entry in queue
            if not entry.finished
        ]
        workers = set(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for key, queue in queues.items():
            if self._queues.get(key) is queue:  # its worker was cancelled before it started
                del self._queues[key]
        for team, entry in left:
            if not entry.started:
                self._dequeued(team)
            self._hand_back(team, entry.turn, HandBack.RESTARTING)
        running = sum(entry.started for _, entry in left)
        log.warning(
            "shutdown grace over: handed back %d turns (%d cancelled while running)",
            len(left),
            running,
        )

    async def _work(self, key: ConversationKey) -> None:
        queue = self._queues[key]
        slots = self._slots.setdefault(key[0], asyncio.Semaphore(self._per_workspace))
        try:
            while queue:
                entry = queue[0]
                async with slots:
                    entry.started = True
                    self._dequeued(key[0])
                    await self._run(key, entry)
                queue.popleft()
        finally:
            del self._queues[key]

    async def _run(self, key: ConversationKey, entry: _Entry) -> None:
        try:
            async with self._hold(key):
                await entry.turn.run()
                entry.finished = True
        except Exception:
            entry.finished = True
            log.exception("turn failed in %s", key)

    def _hold(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        if self._locks is None:
            return contextlib.nullcontext()
        return self._locks.hold(*key)

    def _dequeued(self, team: str) -> None:
        self._queued[team] -= 1
        if self._queued[team] <= 0:
            del self._queued[team]

    def _hand_back(self, team: str, turn: Turn, reason: HandBack) -> None:
        task = asyncio.create_task(self._tell(team, turn, reason), name=f"turns:{reason.value}")
        self._hand_backs.add(task)
        task.add_done_callback(self._hand_backs.discard)

    async def _tell(self, team: str, turn: Turn, reason: HandBack) -> None:
        telling = self._telling.setdefault(team, asyncio.Semaphore(self._per_workspace))
        async with telling:
            try:
                await turn.hand_back(reason)
            except Exception:
                log.exception("could not tell an asker their turn was handed back (%s)", reason)
