"""A pace per Web API method: calls are spaced so at most `per_minute` start in a minute."""

from __future__ import annotations

import asyncio
import contextlib
import time


class Pace:
    """Spaces calls of one method evenly; the first call goes at once."""

    def __init__(self, per_minute: float) -> None:
        self._interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._waiting = False

    @property
    def waiting(self) -> bool:
        """Whether a caller is waiting now for its turn to call (the pace holds it back)."""
        return self._waiting

    async def wait(self, stop: asyncio.Event) -> bool:
        """Return when the next call may start: True, or False as soon as `stop` is set."""
        async with self._lock:
            delay = self._next - time.monotonic()
            if delay > 0:
                self._waiting = True
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                finally:
                    self._waiting = False
            if stop.is_set():
                return False
            self._next = time.monotonic() + self._interval
            return True
