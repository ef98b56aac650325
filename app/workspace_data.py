"""Forgetting a workspace: delete everything Lore keeps about it, and nothing of any other."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger("lore.workspace_data")


class TeamData(Protocol):
    """A store that keeps data per workspace and can drop all of one workspace's."""

    async def delete_team(self, team_id: str) -> None: ...


class WorkspaceData:
    """Every per-workspace store, so one call forgets a workspace everywhere.

    A store added to Lore (e.g. OAuth installations) joins by being listed here.
    """

    def __init__(self, stores: Sequence[TeamData]) -> None:
        self._stores = list(stores)

    async def forget(self, team_id: str) -> None:
        """Delete the workspace's data from every store; all are tried even when one fails."""
        if not team_id:
            raise ValueError("forgetting a workspace needs its team id")
        failures: list[Exception] = []
        for store in self._stores:
            try:
                await store.delete_team(team_id)
            except Exception as error:
                log.exception("could not delete %s's data from %s", team_id, type(store).__name__)
                failures.append(error)
        if failures:
            raise ExceptionGroup(f"forgetting {team_id} was incomplete", failures)
        log.info("forgot workspace %s in %d stores", team_id, len(self._stores))
