"""The queue of work deferred while deliveries arrive: jobs run in order once no delivery has
arrived for `quiet` seconds, or once they have waited `max_wait`; a full queue refuses; closing
runs what waits."""

from __future__ import annotations

import asyncio
import time

from app.quiet_queue import QuietQueue


class Ran:
    """Jobs that record when they ran, and which."""

    def __init__(self) -> None:
        self.order: list[int] = []
        self.at: list[float] = []
        self.all_ran = asyncio.Event()
        self.expected = 0

    def job(self, number: int, fails: bool = False):  # type: ignore[no-untyped-def]
        async def run() -> None:
            self.order.append(number)
            self.at.append(time.monotonic())
            if len(self.order) == self.expected:
                self.all_ran.set()
            if fails:
                raise RuntimeError("this job fails")

        return run


async def test_jobs_run_in_order_only_after_a_quiet_moment() -> None:
    queue, ran = QuietQueue(quiet=0.05, max_wait=30.0), Ran()
    ran.expected = 3
    arrivals: list[float] = []
    for number in range(3):
        arrivals.append(time.monotonic())
        queue.arrived()
        assert queue.put(ran.job(number))
    for _ in range(10):  # deliveries keep coming for a while
        await asyncio.sleep(0.01)
        arrivals.append(time.monotonic())
        queue.arrived()
    await asyncio.wait_for(ran.all_ran.wait(), 10)
    assert ran.order == [0, 1, 2]
    started = ran.at[0]
    last_before = max(t for t in arrivals if t <= started)
    assert started - last_before >= 0.05  # no job ran within `quiet` of a delivery
    assert queue.pending == 0
    await queue.close()


async def test_a_job_that_waited_max_wait_runs_while_deliveries_keep_arriving() -> None:
    queue, ran = QuietQueue(quiet=60.0, max_wait=0.2), Ran()
    ran.expected = 1
    put_at = time.monotonic()
    queue.arrived()
    assert queue.put(ran.job(1))
    while not ran.all_ran.is_set():
        queue.arrived()  # never quiet
        await asyncio.sleep(0.005)
    assert ran.at[0] - put_at >= 0.2
    await queue.close()


async def test_a_full_queue_refuses_and_close_runs_what_waits_at_once() -> None:
    queue, ran = QuietQueue(limit=2, quiet=60.0, max_wait=60.0), Ran()
    ran.expected = 2
    queue.arrived()
    assert queue.put(ran.job(1)) and queue.put(ran.job(2))
    assert not queue.put(ran.job(3))
    assert queue.pending == 2 and ran.order == []
    closing = time.monotonic()
    await queue.close()
    assert ran.order == [1, 2] and ran.at[-1] - closing < 30.0
    assert not queue.put(ran.job(4))  # closed
    assert queue.pending == 0


async def test_a_failing_job_does_not_stop_the_next() -> None:
    queue, ran = QuietQueue(quiet=0.0, max_wait=0.0), Ran()
    ran.expected = 2
    assert queue.put(ran.job(1, fails=True)) and queue.put(ran.job(2))
    await asyncio.wait_for(ran.all_ran.wait(), 10)
    assert ran.order == [1, 2]
    await queue.close()
