"""Reflection's daily token budget per workspace, counted from the API's usage fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anthropic

from memory.reflection_state import ReflectionState


def utc_day() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def tokens_of(usage: anthropic.types.Usage) -> int:
    """Input (uncached, cache read and cache written) plus output tokens of one request."""
    return (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
        + usage.output_tokens
    )


@dataclass(frozen=True)
class BudgetStatus:
    """A workspace's reflection spend today, for App Home."""

    day: str
    spent: int
    limit: int

    @property
    def over(self) -> bool:
        return self.spent >= self.limit


class Budget:
    """`LORE_REFLECT_TOKENS_PER_DAY` per workspace; the spend is kept in the SQL store, so
    every process sharing it counts against one budget."""

    def __init__(
        self, state: ReflectionState, per_day: int, today: Callable[[], str] = utc_day
    ) -> None:
        self._state = state
        self.per_day = per_day
        self._today = today

    async def status(self, team_id: str) -> BudgetStatus:
        day = self._today()
        return BudgetStatus(day, await self._state.spent(team_id, day), self.per_day)

    async def spend(self, team_id: str, usage: anthropic.types.Usage) -> BudgetStatus:
        """Count one request's tokens; the status after it."""
        day = self._today()
        spent = await self._state.spend(team_id, day, tokens_of(usage))
        return BudgetStatus(day, spent, self.per_day)
