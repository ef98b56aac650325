"""Bounded retries with exponential backoff, for archive work a store outage interrupts."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

log = logging.getLogger("lore.retry")

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Waits of `first` seconds, doubling up to `cap`, with +-`jitter`; `attempts` in all
    (the defaults wait about 3.5 minutes for a store to come back before giving up)."""

    first: float = 0.5
    cap: float = 30.0
    attempts: int = 12
    jitter: float = 0.2

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failure (1-based)."""
        base = min(self.cap, self.first * 2 ** (failures - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


class CountsRetries(Protocol):
    def archive_retry_waiting(self, seconds: float, first: bool) -> None:
        """A failed attempt (`first` of its work); the next one starts in `seconds`."""
        ...  # pragma: no cover - protocol

    def archive_retry_done(self) -> None:
        """Work that had failed is through, or given up."""
        ...  # pragma: no cover - protocol


async def retrying(
    attempt: Callable[[], Awaitable[T]], backoff: Backoff, counts: CountsRetries, what: str
) -> T:
    """`await attempt()` until it succeeds or `backoff.attempts` have failed (then the last
    error is raised); each failure is logged and its wait counted."""
    failures = 0
    try:
        while True:
            try:
                return await attempt()
            except Exception as error:
                failures += 1
                if failures >= backoff.attempts:
                    log.error("%s failed %d times; giving up for now: %s", what, failures, error)
                    raise
                delay = backoff.delay(failures)
                log.warning("%s failed (%s); trying again in %.1f s", what, error, delay)
                counts.archive_retry_waiting(delay, first=failures == 1)
                await asyncio.sleep(delay)
    finally:
        if failures:
            counts.archive_retry_done()
