"""A thread's history read from the archive, when the archive holds all of it.

A follow-up turn needs every message of its thread before the asked one. The archive serves
them (no `conversations.replies`, which Slack rate-limits hard) only when it can vouch for
them all; otherwise the turn reads the thread from Slack. The archive is trusted when:
- the channel is archived (not excluded in App Home);
- no backfill of the channel is under way (it may not have reached the thread yet), and no
  live message of the channel was left to a re-read because the archive backlog was full;
- no message of the thread older than the asked one was received by this process and is
  still on its way into the archive (the asked message's predecessors in the ingest queue),
  and no archive job of the channel failed here (and has not succeeded since, run again);
- the thread's parent is stored (a thread begun before Lore archived the channel is not).
Lore's own replies are stored (with `is_bot`) before its turn ends, and turns of one thread
run one at a time, so an earlier answer is there; a reply that could not be stored marks its
thread as one the archive does not serve (`gap`). What this process cannot see: a
message received by another process (scale-out) and still in that process's ingest, typically
for well under a second; such a message is missing from this turn's history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from app.agent.ports import ThreadMessage
from app.backfill import Backfill
from memory.archive import Archive
from memory.backfill_state import DONE


class Settling(Protocol):
    """What this process knows of messages received and not yet stored (`ArchiveQueue`)."""

    def unsettled(self, team_id: str, channel_id: str, thread_ts: str, before_ts: str) -> bool: ...


Backfilling = Callable[[str, str], Awaitable[bool]]
"""Whether a backfill of (team, channel) is under way."""


class ArchivedHistory:
    """Threads' histories from the archive, or None where the archive cannot vouch for one."""

    def __init__(
        self,
        archive: Archive,
        *,
        is_excluded: Callable[[str, str], Awaitable[bool]],
        settling: Settling,
        backfilling: Backfilling,
    ) -> None:
        self._archive = archive
        self._is_excluded = is_excluded
        self._settling = settling
        self._backfilling = backfilling
        self._gaps: set[tuple[str, str, str]] = set()

    def gap(self, team_id: str, channel_id: str, thread_ts: str) -> None:
        """A message of this thread could not be archived (e.g. Lore's reply): ask Slack."""
        self._gaps.add((team_id, channel_id, thread_ts))

    async def history(
        self, team_id: str, channel_id: str, thread_ts: str, upto_ts: str
    ) -> list[ThreadMessage] | None:
        """The thread's messages up to and including `upto_ts`, oldest first, or None."""
        if (team_id, channel_id, thread_ts) in self._gaps:
            return None
        if self._settling.unsettled(team_id, channel_id, thread_ts, upto_ts):
            return None
        if await self._is_excluded(team_id, channel_id):
            return None
        if await self._backfilling(team_id, channel_id):
            return None
        stored = await self._archive.thread(team_id, channel_id, thread_ts)
        if not stored or stored[0].ts != thread_ts:
            return None  # the parent is not stored: the thread predates the archive
        limit = float(upto_ts)
        return [
            ThreadMessage(ts=m.ts, user_id=m.user_id, text=m.text, from_bot=m.is_bot)
            for m in stored
            if float(m.ts) <= limit
        ]


def backfill_under_way(backfill: Backfill) -> Backfilling:
    """`Backfilling` from the backfill's records (shared by every process)."""

    async def under_way(team_id: str, channel_id: str) -> bool:
        record = await backfill.state.get(team_id, channel_id)
        return record is not None and record.status != DONE

    return under_way
