"""Which workspaces are being forgotten, for a worker whose jobs wait before they run.

A job is stamped when it is accepted (`stamp`); if its workspace is halted before the job runs,
the stamp is stale and the job must not run (`stale`). `halt` returns once the workspace's jobs
running now (`running`) have ended, so nothing of it runs after the forgetting's deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator


class TeamHalts:
    def __init__(self) -> None:
        self._halted: set[str] = set()
        self._halts: Counter[str] = Counter()  # times each workspace was halted
        self._running: Counter[str] = Counter()  # each workspace's jobs running now
        self._ended = asyncio.Event()

    def halted(self, team_id: str) -> bool:
        """Whether the workspace is halted now (until `resume`)."""
        return team_id in self._halted

    def stamp(self, team_id: str) -> int:
        return self._halts[team_id]

    def stale(self, team_id: str, stamp: int) -> bool:
        """Whether the workspace was halted since the job was stamped."""
        return self._halts[team_id] != stamp

    async def halt(self, team_id: str) -> None:
        self._halted.add(team_id)
        self._halts[team_id] += 1
        while self._running[team_id]:
            self._ended.clear()
            await self._ended.wait()

    def resume(self, team_id: str) -> None:
        self._halted.discard(team_id)

    @contextlib.contextmanager
    def running(self, team_id: str) -> Iterator[None]:
        """A job of the workspace runs meanwhile: `halt` waits for it."""
        self._running[team_id] += 1
        try:
            yield
        finally:
            self._running[team_id] -= 1
            if not self._running[team_id]:
                del self._running[team_id]
            self._ended.set()
