"""The forget channel on real Redis: every subscribed process halts a workspace and answers
before the data goes, then resumes; one that answers too late still ends up resumed."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from app.forget_broadcast import ForgetBroadcast
from tests.conftest import new_team


class Process:
    """What one Lore process does when told: records halts and resumes."""

    def __init__(self, halt_takes: asyncio.Event | None = None) -> None:
        self.halted: set[str] = set()
        self.events: list[str] = []
        self.halt_takes = halt_takes

    async def halt(self, team_id: str) -> None:
        if self.halt_takes is not None:
            await self.halt_takes.wait()
        self.halted.add(team_id)
        self.events.append(f"halt {team_id}")

    def resume(self, team_id: str) -> None:
        self.halted.discard(team_id)
        self.events.append(f"resume {team_id}")


async def eventually_true(check: object, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110 - state of a callback
            await asyncio.sleep(0.01)


async def test_every_process_halts_before_the_publisher_goes_on_and_resumes_after(
    redis_client: Redis,
) -> None:
    first, second = Process(), Process()
    ends = [ForgetBroadcast(redis_client, p.halt, p.resume) for p in (first, second)]
    for end in ends:
        await end.start()
    team = new_team()
    try:
        asked, answered = await ends[0].halt_everywhere(team)
        assert asked >= 2 and answered == asked
        assert team in first.halted and team in second.halted
        await ends[0].resume_everywhere(team)
        await eventually_true(lambda: team not in first.halted and team not in second.halted)
        assert first.events == second.events == [f"halt {team}", f"resume {team}"]
    finally:
        for end in ends:
            await end.close()


async def test_a_process_that_answers_too_late_is_resumed_all_the_same(
    redis_client: Redis,
) -> None:
    release = asyncio.Event()
    quick, slow = Process(), Process(halt_takes=release)
    ends = [
        ForgetBroadcast(redis_client, quick.halt, quick.resume, ack_seconds=1),
        ForgetBroadcast(redis_client, slow.halt, slow.resume, ack_seconds=1),
    ]
    for end in ends:
        await end.start()
    team = new_team()
    try:
        asked, answered = await ends[0].halt_everywhere(team)
        assert answered < asked  # the slow one is still halting
        await ends[0].resume_everywhere(team)
        await eventually_true(
            lambda: team not in quick.halted and quick.events[-1:] == [f"resume {team}"]
        )
        release.set()
        await eventually_true(lambda: slow.events == [f"halt {team}", f"resume {team}"])
        assert team not in slow.halted
    finally:
        for end in ends:
            await end.close()
