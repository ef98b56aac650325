"""Forgetting a workspace: delete everything Lore keeps about it, and nothing of any other.

First the workspace's work stops in every process (`halt_team`): its running and queued turns and
its backfill are cancelled, its messages waiting to be archived are dropped, what a process
caches of it is dropped, and no new work of it is taken. Only then is its data deleted from
every store (SQL tables, Chroma, Redis keys), so nothing a late turn or backfill writes can
bring any of it back. Work is taken again afterwards (`resume_team`), so a re-install starts clean.
Across processes the halt travels over Redis (`app.forget_broadcast`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from app.forget_broadcast import ForgetBroadcast

log = logging.getLogger("lore.workspace_data")


class TeamData(Protocol):
    """A store that keeps data per workspace and can drop all of one workspace's."""

    async def delete_team(self, team_id: str) -> None: ...


class TeamWork(Protocol):
    """Work or a cache of one process that holds workspaces' data for a while."""

    async def halt_team(self, team_id: str) -> None:
        """Cancel the workspace's work here, drop what is cached of it, take none until
        `resume_team`; return once its work has ended."""
        ...

    def resume_team(self, team_id: str) -> None: ...


class WorkspaceData:
    """Every per-workspace store and every process-local worker, so one call forgets a
    workspace everywhere.

    A store added to Lore joins by being listed in `stores`, a worker or cache in `work`
    (both in `app.main.make_services`).
    """

    def __init__(self, stores: Sequence[TeamData], work: Sequence[TeamWork] = ()) -> None:
        self._stores = list(stores)
        self._work = list(work)
        self.broadcast: ForgetBroadcast | None = None

    def add_work(self, work: TeamWork) -> None:
        """A worker or cache made after start-up (e.g. Bolt's, once Slack is connected)."""
        self._work.append(work)

    async def forget(self, team_id: str) -> None:
        """Stop the workspace's work everywhere, then delete its data from every store (all
        are tried even when one fails), then take its work again."""
        if not team_id:
            raise ValueError("forgetting a workspace needs its team id")
        if self.broadcast is not None:
            await self.broadcast.halt_everywhere(team_id)
        else:
            await self.halt_here(team_id)
        try:
            failures = await self._delete(team_id)
        finally:
            if self.broadcast is not None:
                await self.broadcast.resume_everywhere(team_id)
            else:
                self.resume_here(team_id)
        if failures:
            raise ExceptionGroup(f"forgetting {team_id} was incomplete", failures)
        log.info("forgot workspace %s in %d stores", team_id, len(self._stores))

    async def halt_here(self, team_id: str) -> None:
        """This process's part of a halt (called directly, or from the broadcast)."""
        for work in self._work:
            try:
                await work.halt_team(team_id)
            except Exception:
                log.exception("could not stop %s's work in %s", team_id, type(work).__name__)

    def resume_here(self, team_id: str) -> None:
        for work in self._work:
            work.resume_team(team_id)

    async def _delete(self, team_id: str) -> list[Exception]:
        failures: list[Exception] = []
        for store in self._stores:
            try:
                await store.delete_team(team_id)
            except Exception as error:
                log.exception("could not delete %s's data from %s", team_id, type(store).__name__)
                failures.append(error)
        return failures
