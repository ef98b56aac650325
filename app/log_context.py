"""What a log line is about (team, event, conversation), carried in a context variable.

The Bolt middleware binds the team and event id of each delivery (`bind_delivery`), a turn
binds its conversation (`bound`); `app.logging_setup` writes the fields into every JSON log
line. Tasks created while fields are bound inherit them (asyncio copies the context), so
listeners and background jobs log with the ids of the event that started them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

FIELDS: Final = ("team", "event_id", "channel", "thread_ts")
"""The fields a log line may carry, in the order they are written."""

LogFields = MappingProxyType[str, str]

_EMPTY: LogFields = MappingProxyType({})
_current: ContextVar[LogFields] = ContextVar("lore_log_fields", default=_EMPTY)


def current() -> LogFields:
    """The fields bound now (read-only)."""
    return _current.get()


def _checked(fields: dict[str, str | None]) -> dict[str, str]:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields: {sorted(unknown)}")
    return {name: value for name, value in fields.items() if value is not None}


def bind_delivery(**fields: str | None) -> None:
    """Bind `fields` (those not None) for the rest of the current task, replacing any others.

    For a Slack delivery: Bolt runs its listeners after the middleware has returned, so the
    middleware cannot wrap them; aiohttp and Socket Mode handle each delivery in a task of its
    own, so the binding ends with the delivery.
    """
    _current.set(MappingProxyType(_checked(fields)))


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Bind `fields` (those not None) on top of the current ones for the `with` block."""
    token = _current.set(MappingProxyType({**_current.get(), **_checked(fields)}))
    try:
        yield
    finally:
        _current.reset(token)


def carried(job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """`job`, run later with the fields bound now (e.g. a turn queued behind another one, which
    runs in a worker task that was created for an earlier event)."""
    fields = _current.get()

    async def run() -> None:
        token = _current.set(fields)
        try:
            await job()
        finally:
            _current.reset(token)

    return run
