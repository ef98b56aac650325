"""Turn ordering: one at a time per conversation in arrival order; conversations in parallel."""

from __future__ import annotations

import asyncio

from app.turns import TurnQueue


async def test_one_conversation_runs_in_order_and_others_in_parallel() -> None:
    queue = TurnQueue(per_workspace=8)
    log: list[str] = []
    running: set[str] = set()
    overlap: list[str] = []

    def job(conversation: str, n: int) -> object:
        async def run() -> None:
            if conversation in running:
                overlap.append(conversation)
            running.add(conversation)
            await asyncio.sleep(0.01 * (3 - n))
            log.append(f"{conversation}{n}")
            running.discard(conversation)

        return run

    for n in range(3):
        for conversation in ("a", "b"):
            queue.submit(("T", "C", conversation), job(conversation, n))  # type: ignore[arg-type]
    await queue.drain()
    assert [e for e in log if e[0] == "a"] == ["a0", "a1", "a2"]
    assert [e for e in log if e[0] == "b"] == ["b0", "b1", "b2"]
    assert not overlap
    assert log.index("b0") < log.index("a1")


async def test_workspace_bound_limits_concurrency_and_failures_do_not_stop_the_queue() -> None:
    queue = TurnQueue(per_workspace=2)
    active = 0
    peak = 0
    finished: list[int] = []

    def job(n: int) -> object:
        async def run() -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            if n == 0:
                raise RuntimeError("boom")
            finished.append(n)

        return run

    for n in range(6):
        queue.submit(("T", "C", f"thread{n % 3}"), job(n))  # type: ignore[arg-type]
    await queue.drain()
    assert peak == 2
    assert sorted(finished) == [1, 2, 3, 4, 5]
    assert queue.depth == 0
