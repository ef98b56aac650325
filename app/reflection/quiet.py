"""Which threads are due for reflection: quiet for a while, with messages not read yet."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from memory.archive import Archive, ArchivedMessage
from memory.reflection_state import ReflectionState, ThreadMark

MIN_NEW_MESSAGES = 2
"""A quiet thread is read once it has this many messages reflection has not read."""
MAX_THREAD_CHARS = 30_000
"""Of a thread's unread messages, the oldest that fit in this are read at once; the rest wait
for the next pass (the channel's position stays until they are read)."""


@dataclass(frozen=True)
class DueThread:
    """A thread to reflect on: its messages not read yet (the whole thread when sent back)."""

    channel_id: str
    channel_type: str
    thread_ts: str
    messages: tuple[ArchivedMessage, ...]
    reopens: int = 0
    partial: bool = False
    """Only the oldest of its unread messages: it is due again at the next pass."""

    @property
    def read_upto(self) -> float:
        return max(float(m.ts) for m in self.messages)


@dataclass(frozen=True)
class DueChannel:
    """A channel's due threads, and the position it moves to once they are all read."""

    channel_id: str
    channel_type: str
    threads: tuple[DueThread, ...]
    position: float


Busy = Callable[[str], Awaitable[frozenset[str]]]
"""A workspace's channels that must not be reflected yet (their history is still being read)."""


def lore_reply(message: ArchivedMessage) -> bool:
    """Lore's own answers are not read: they repeat messages reflection reads where they are."""
    return message.from_lore


async def due_channels(
    state: ReflectionState,
    archive: Archive,
    team_id: str,
    *,
    now: float,
    after: float,
    busy: frozenset[str] = frozenset(),
) -> list[DueChannel]:
    """Every channel of the workspace with a thread due now, or whose position may move."""
    cutoff = now - after
    positions = await state.positions(team_id)
    reopened = await state.reopened_channels(team_id)
    found: list[DueChannel] = []
    for top in await state.channels(team_id):
        position = positions.get(top.channel_id, 0.0)
        if top.channel_id in busy or (top.newest <= position and top.channel_id not in reopened):
            continue
        marks = await state.threads_after(team_id, top.channel_id, position)
        if not marks:
            continue
        threads = []
        for mark in marks:
            if mark.newest > cutoff:
                continue  # not quiet yet: found again, its newest message is past the position
            thread = await _due(archive, team_id, top.channel_type, mark)
            if thread is not None:
                threads.append(thread)
        moved = min(cutoff, top.newest)
        if threads or moved > position:
            found.append(DueChannel(top.channel_id, top.channel_type, tuple(threads), moved))
    return found


async def _due(
    archive: Archive, team_id: str, channel_type: str, mark: ThreadMark
) -> DueThread | None:
    messages = await archive.thread(team_id, mark.channel_id, mark.thread_ts)
    unread = [
        m for m in messages if not lore_reply(m) and (mark.reopened or float(m.ts) > mark.read_upto)
    ]
    wanted = 1 if mark.reopened else MIN_NEW_MESSAGES
    if len(unread) < wanted:
        return None
    fitting: list[ArchivedMessage] = []
    size = 0
    for m in unread:
        size += len(m.text)
        if fitting and size > MAX_THREAD_CHARS:
            break
        fitting.append(m)
    return DueThread(
        mark.channel_id,
        channel_type,
        mark.thread_ts,
        tuple(fitting),
        mark.reopens,
        partial=len(fitting) < len(unread),
    )
