"""Forgetting a workspace tries every store, even after one of them fails."""

from __future__ import annotations

import pytest

from app.workspace_data import WorkspaceData


class Store:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.deleted: list[str] = []

    async def delete_team(self, team_id: str) -> None:
        self.deleted.append(team_id)
        if self.fails:
            raise RuntimeError("store unavailable")


async def test_every_store_is_asked_and_a_failure_is_reported() -> None:
    first, broken, last = Store(), Store(fails=True), Store()
    with pytest.raises(ExceptionGroup, match="forgetting T1 was incomplete"):
        await WorkspaceData([first, broken, last]).forget("T1")
    assert first.deleted == broken.deleted == last.deleted == ["T1"]


async def test_a_team_id_is_required() -> None:
    store = Store()
    with pytest.raises(ValueError, match="team id"):
        await WorkspaceData([store]).forget("")
    assert store.deleted == []
