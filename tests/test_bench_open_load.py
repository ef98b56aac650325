"""The open-load benchmark's own tools: the paced fake model and the capacity search."""

from __future__ import annotations

from typing import Any

import aiohttp

from app.agent.tools import TOOLS
from bench.fake_model import TimedFake
from bench.open_load import capacity, next_probe

STREAM_SECONDS = 0.2


def run(rate: float, holds: bool) -> dict[str, Any]:
    return {"rate": rate, "holds": holds}


async def test_a_paced_answer_streams_whole_and_takes_its_time_at_the_server() -> None:
    fake = TimedFake(port=0, steps=1, stream_seconds=STREAM_SECONDS)
    unpaced = TimedFake(port=0, steps=1)
    await fake.start()
    await unpaced.start()
    try:
        for server in (fake, unpaced):
            client = server.client(max_retries=0)
            async with client.messages.stream(
                model="m",
                max_tokens=64,
                messages=[{"role": "user", "content": "<@U0LORE> f-2-5 and since?"}],
                tools=TOOLS,  # type: ignore[arg-type]
            ) as stream:
                final = await stream.get_final_message()
            await client.close()
            assert final.content[0].type == "text"
            assert final.content[0].text == "Answer to f-2-5."
        timings = []
        async with aiohttp.ClientSession() as session:
            for server in (fake, unpaced):
                async with session.get(f"{server.base_url}/_bench/timings") as response:
                    timings.append((await response.json())[0])
        assert [t["tag"] for t in timings] == ["f-2-5", "f-2-5"]
        paced, at_once = (t["ms"] for t in timings)
        assert paced >= 1000 * STREAM_SECONDS  # it sleeps that long between its events
        assert at_once < 1000 * STREAM_SECONDS
    finally:
        await fake.stop()
        await unpaced.stop()


def test_the_capacity_search_doubles_until_a_rate_fails_then_bisects() -> None:
    runs = [run(10, True), run(20, True), run(40, True)]
    assert next_probe(runs, 0.1) == 80
    runs.append(run(80, False))
    assert next_probe(runs, 0.1) == 60
    runs.append(run(60, True))
    assert next_probe(runs, 0.1) == 70
    runs.append(run(70, False))
    assert next_probe(runs, 0.1) == 65
    runs.append(run(65, True))
    assert next_probe(runs, 0.1) is None  # 65 holds, 70 does not: within 10%
    assert capacity(runs) == {"turns_per_second": 65, "fails_at": 70}


def test_the_capacity_search_halves_below_the_rates_asked_and_ignores_a_noisy_miss() -> None:
    runs = [run(10, False), run(20, False), run(40, False)]
    assert next_probe(runs, 0.1) == 5
    runs.append(run(5, True))
    assert next_probe(runs, 0.1) == 7.5
    # a lower rate that missed (noise on a busy machine) does not bound a higher one that held
    runs += [run(7.5, True), run(6, False)]
    assert capacity(runs) == {"turns_per_second": 7.5, "fails_at": 10}
    assert next_probe(runs, 0.1) == 8.75
    assert capacity([run(10, False)]) == {"turns_per_second": 0.0, "fails_at": 10}
