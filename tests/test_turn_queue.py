"""Turn ordering: one at a time per conversation in arrival order; conversations in parallel;
a bounded queue per workspace; refused and left-over turns handed back, never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app.turns import HandBack, Turn, TurnQueue


class Asker:
    """Records what happened to the turns it submitted."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.handed_back: list[tuple[str, HandBack]] = []

    def turn(self, name: str, body: Callable[[], Awaitable[object]] | None = None) -> Turn:
        async def run() -> None:
            if body is not None:
                await body()
            self.ran.append(name)

        async def hand_back(reason: HandBack) -> None:
            self.handed_back.append((name, reason))

        return Turn(run=run, hand_back=hand_back)


async def test_one_conversation_runs_in_order_and_others_in_parallel() -> None:
    queue = TurnQueue(per_workspace=8)
    asker = Asker()
    running: set[str] = set()
    overlap: list[str] = []

    def body(conversation: str, n: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if conversation in running:
                overlap.append(conversation)
            running.add(conversation)
            await asyncio.sleep(0.01 * (3 - n))
            running.discard(conversation)

        return run

    for n in range(3):
        for conversation in ("a", "b"):
            name = f"{conversation}{n}"
            assert queue.submit(("T", "C", conversation), asker.turn(name, body(conversation, n)))
    await queue.drain()
    log = asker.ran
    assert [e for e in log if e[0] == "a"] == ["a0", "a1", "a2"]
    assert [e for e in log if e[0] == "b"] == ["b0", "b1", "b2"]
    assert not overlap
    assert log.index("b0") < log.index("a1")
    assert not asker.handed_back


async def test_workspace_bound_limits_concurrency_and_failures_do_not_stop_the_queue() -> None:
    queue = TurnQueue(per_workspace=2)
    asker = Asker()
    active = 0
    peak = 0

    def body(n: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            if n == 0:
                raise RuntimeError("boom")

        return run

    for n in range(6):
        queue.submit(("T", "C", f"thread{n % 3}"), asker.turn(str(n), body(n)))
    await queue.drain()
    assert peak == 2
    assert sorted(asker.ran) == ["1", "2", "3", "4", "5"]
    assert queue.depth == 0
    assert queue.queued("T") == 0


async def test_a_full_workspace_queue_refuses_as_busy_and_other_workspaces_go_on() -> None:
    queue = TurnQueue(per_workspace=1, max_queued=2)
    asker = Asker()
    release = asyncio.Event()
    assert queue.submit(("T", "C", "running"), asker.turn("running", release.wait))
    await asyncio.sleep(0)
    assert queue.queued("T") == 0
    assert queue.submit(("T", "C", "q1"), asker.turn("q1"))
    assert queue.submit(("T", "C", "q2"), asker.turn("q2"))
    assert queue.queued("T") == 2
    assert not queue.submit(("T", "C", "refused"), asker.turn("refused"))
    assert queue.submit(("T2", "C", "elsewhere"), asker.turn("elsewhere"))
    release.set()
    await queue.drain()
    assert sorted(asker.ran) == ["elsewhere", "q1", "q2", "running"]
    assert asker.handed_back == [("refused", HandBack.BUSY)]
    assert queue.submit(("T", "C", "later"), asker.turn("later"))
    await queue.drain()
    assert "later" in asker.ran


async def test_closed_queue_hands_back_as_restarting() -> None:
    queue = TurnQueue(per_workspace=4)
    asker = Asker()
    queue.close()
    assert not queue.submit(("T", "C", "late"), asker.turn("late"))
    await queue.drain()
    assert asker.ran == []
    assert asker.handed_back == [("late", HandBack.RESTARTING)]


async def test_grace_over_hands_back_running_and_queued_turns_but_not_finished_ones() -> None:
    queue = TurnQueue(per_workspace=1)
    asker = Asker()
    never = asyncio.Event()
    quick_done = asyncio.Event()

    async def quick() -> None:
        quick_done.set()

    assert queue.submit(("T", "C", "quick"), asker.turn("quick", quick))
    assert queue.submit(("T", "C", "stuck"), asker.turn("stuck", never.wait))
    assert queue.submit(("T", "C", "behind"), asker.turn("behind"))
    assert queue.submit(("T", "C2", "other"), asker.turn("other"))
    await quick_done.wait()
    queue.close()
    await queue.drain(grace=0.05)
    assert asker.ran == ["quick"]
    assert sorted(asker.handed_back) == [
        ("behind", HandBack.RESTARTING),
        ("other", HandBack.RESTARTING),
        ("stuck", HandBack.RESTARTING),
    ]
    assert queue.depth == 0
    assert queue.queued("T") == 0


async def test_a_workspace_being_forgotten_hands_back_its_turns_as_forgotten() -> None:
    """Halting a workspace cancels its running turn and hands back the queued one and any
    submitted later as forgotten (so whoever waits on them hears of it); another workspace's
    turn runs (the control)."""
    queue = TurnQueue(per_workspace=1)
    asker = Asker()
    started, never = asyncio.Event(), asyncio.Event()

    async def running() -> None:
        started.set()
        await never.wait()

    assert queue.submit(("T", "C", "a"), asker.turn("running", running))
    assert queue.submit(("T", "C", "b"), asker.turn("queued"))
    await started.wait()
    await queue.halt_team("T")
    assert not queue.submit(("T", "C", "c"), asker.turn("later"))
    assert queue.submit(("T2", "C", "a"), asker.turn("elsewhere"))
    await queue.drain()
    assert asker.ran == ["elsewhere"]
    forgotten = HandBack.FORGOTTEN
    assert sorted(asker.handed_back) == [("later", forgotten), ("queued", forgotten)]
