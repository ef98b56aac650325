"""The intake log and the service over it: kept entries survive the process, removed ones do
not come back, entries about one message are removed together and replayed in order, and a live
process adopts the entries of a dead one (Redis) but never those of a live one."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.lock import Lock

from app.intake import Intake
from app.retry import Backoff
from memory.intake import Adopted, FileIntake, IntakeBusy, Payload, RedisIntake
from memory.locks import Lease, RedisLeases
from tests.harness import eventually


class Counts:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.retrying = 0

    def archive_retry_waiting(self, seconds: float, first: bool) -> None:
        self.waits.append(seconds)
        self.retrying += first

    def archive_retry_done(self) -> None:
        self.retrying -= 1


async def everyone(_team_id: str) -> bool:
    return True


def segments(directory: Path) -> int:
    return len(list(directory.glob("*.log")))


def append_to_the_only_segment(directory: Path, data: bytes) -> None:
    [segment] = directory.glob("*.log")
    with segment.open("ab") as file:
        file.write(data)


def lines_of_the_only_segment(directory: Path) -> list[bytes]:
    [segment] = directory.glob("*.log")
    return segment.read_bytes().splitlines()


def snapshot(directory: Path) -> Path:
    """A copy of the log as it is now on disk: what a restart right now would find."""
    copy = directory.parent / f"{directory.name}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(directory, copy)
    return copy


async def left_in(directory: Path) -> list[tuple[str, str, Payload]]:
    """What a process opening the log in `directory` would adopt after the event loop's next
    pass, which writes the removals made in this one: (team, key, payload)."""
    await asyncio.sleep(0)
    reopened = FileIntake.open(snapshot(directory))
    try:
        return [
            (e.team_id, e.key, e.payload) for a in await reopened.adopt(everyone) for e in a.entries
        ]
    finally:
        await reopened.close()


async def test_a_file_log_keeps_what_was_not_removed_across_a_restart(tmp_path: Path) -> None:
    intake = FileIntake.open(tmp_path)
    first = await intake.append("T1", "C1:1", {"event": {"text": "one"}})
    await intake.append("T1", "C1:2", {"event": {"text": "two"}})
    await intake.append("T2", "C9:3", {"event": {"text": "three"}})
    await intake.remove(first)
    # no close: the process is gone without tidying up
    assert await left_in(tmp_path) == [
        ("T1", "C1:2", {"event": {"text": "two"}}),
        ("T2", "C9:3", {"event": {"text": "three"}}),
    ]


async def test_removals_of_one_pass_share_one_record(tmp_path: Path) -> None:
    intake = FileIntake.open(tmp_path)
    entries = [await intake.append("T1", f"C1:{n}", {"n": n}) for n in range(5)]
    for entry in entries[:4]:
        await intake.remove(entry)
    assert len(lines_of_the_only_segment(tmp_path)) == 5  # a crash now only repeats them
    await asyncio.sleep(0)
    assert lines_of_the_only_segment(tmp_path)[5:] == [b'{"d":[1,2,3,4]}']
    assert [payload["n"] for _, _, payload in await left_in(tmp_path)] == [4]


async def test_adopted_entries_done_are_gone_for_the_next_run(tmp_path: Path) -> None:
    intake = FileIntake.open(tmp_path)
    for n in range(3):
        await intake.append("T1", f"C1:{n}", {"n": n})
    await intake.close()
    again = FileIntake.open(tmp_path)
    [adopted] = await again.adopt(everyone)
    assert [e.payload["n"] for e in adopted.entries] == [0, 1, 2]
    await adopted.done(adopted.entries[1])
    assert await again.adopt(everyone) == []  # handed over once
    await again.close()
    assert [payload["n"] for _, _, payload in await left_in(tmp_path)] == [0, 2]


async def test_entries_of_workspaces_no_longer_served_are_dropped(tmp_path: Path) -> None:
    intake = FileIntake.open(tmp_path)
    await intake.append("T1", "C1:1", {"n": 1})
    await intake.append("T2", "C1:1", {"n": 2})
    await intake.close()

    async def only_t1(team_id: str) -> bool:
        return team_id == "T1"

    again = FileIntake.open(tmp_path)
    [adopted] = await again.adopt(only_t1)
    assert [e.team_id for e in adopted.entries] == ["T1"]
    await again.close()
    assert [team for team, _, _ in await left_in(tmp_path)] == ["T1"]


async def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    intake = FileIntake.open(tmp_path)
    await intake.append("T1", "C1:1", {"n": 1})
    await intake.close()
    append_to_the_only_segment(tmp_path, b'{"n": 2, "t": "T1", "k": "C1:2", "p": {"n"')  # cut
    assert [payload for _, _, payload in await left_in(tmp_path)] == [{"n": 1}]


async def test_segments_are_deleted_oldest_first_once_nothing_in_them_is_pending(
    tmp_path: Path,
) -> None:
    intake = FileIntake.open(tmp_path, segment_bytes=100)
    entries = [await intake.append("T1", f"C1:{n}", {"text": "x" * 100}) for n in range(6)]
    assert segments(tmp_path) == 6  # one entry a segment at this size
    for entry in entries[1:]:
        await intake.remove(entry)
    # the first entry is still pending: its segment, and the removals after it, stay
    assert segments(tmp_path) == 6
    assert [key for _, key, _ in await left_in(tmp_path)] == ["C1:0"]
    await intake.remove(entries[0])
    assert segments(tmp_path) == 1
    await intake.close()
    assert await left_in(tmp_path) == []


async def test_an_entry_finished_before_an_earlier_one_of_its_message_stays_until_that_one_is(
    tmp_path: Path,
) -> None:
    intake = Intake(FileIntake.open(tmp_path), Counts())
    message = await intake.keep("T1", "C1:100", {"event": "posted"})
    edit = await intake.keep("T1", "C1:100", {"event": "edited"})
    other = await intake.keep("T1", "C1:200", {"event": "posted elsewhere"})
    await intake.done(edit)  # an edit kept in memory for its message, which is not stored yet
    await intake.done(other)
    assert intake.pending == 2
    assert [payload for _, _, payload in await left_in(tmp_path)] == [
        {"event": "posted"},
        {"event": "edited"},
    ]
    await intake.done(message)
    assert intake.pending == 0
    assert await left_in(tmp_path) == []


async def test_a_change_finished_stays_while_an_older_change_of_its_message_is_pending(
    tmp_path: Path,
) -> None:
    """Slack delivered a message's later edit first: once applied, it stays in the log with the
    earlier one, so a restart replays both (and the later still wins) rather than the earlier
    alone."""
    intake = Intake(FileIntake.open(tmp_path), Counts())
    posted = await intake.keep("T1", "C1:100", {"event": "posted"})
    await intake.done(posted)
    later = await intake.keep("T1", "C1:100", {"event": "edited at 2"})
    earlier = await intake.keep("T1", "C1:100", {"event": "edited at 1"})
    await intake.done(later)
    assert intake.pending == 2
    assert [payload for _, _, payload in await left_in(tmp_path)] == [
        {"event": "edited at 2"},
        {"event": "edited at 1"},
    ]
    await intake.done(earlier)
    assert intake.pending == 0
    assert await left_in(tmp_path) == []


async def test_recovery_replays_in_order_per_message_and_retries_until_stored(
    tmp_path: Path,
) -> None:
    log = FileIntake.open(tmp_path)
    for n, key in enumerate(["C1:1", "C1:2", "C1:1", "C1:1", "C1:2"]):
        await log.append("T1", key, {"n": n})
    await log.close()
    replayed: list[int] = []
    failures = {0: 2, 1: 1}  # the store fails a few times for the first two

    async def replay(_team_id: str, payload: Payload) -> None:
        n = payload["n"]
        if failures.get(n):
            failures[n] -= 1
            raise ConnectionError("store away")
        await asyncio.sleep(0.01 * (5 - n))  # later entries would finish first if not chained
        replayed.append(n)

    counts = Counts()
    intake = Intake(FileIntake.open(tmp_path), counts, Backoff(first=0.01, cap=0.02))
    assert await intake.recover(replay, everyone) == 5
    await intake.close()
    assert [n for n in replayed if n in (0, 2, 3)] == [0, 2, 3]
    assert [n for n in replayed if n in (1, 4)] == [1, 4]
    assert len(counts.waits) == 3 and counts.retrying == 0
    assert await left_in(tmp_path) == []


async def test_what_cannot_be_stored_after_the_retries_stays_for_later(tmp_path: Path) -> None:
    log = FileIntake.open(tmp_path)
    await log.append("T1", "C1:1", {"n": 1})
    await log.close()

    async def replay(_team_id: str, _payload: Payload) -> None:
        raise ConnectionError("store away")

    intake = Intake(FileIntake.open(tmp_path), Counts(), Backoff(first=0.01, attempts=3))
    assert await intake.recover(replay, everyone) == 0
    await intake.close()
    assert [payload for _, _, payload in await left_in(tmp_path)] == [{"n": 1}]


async def test_a_workspace_forgotten_while_its_entries_replay_gets_none_of_them_back(
    tmp_path: Path,
) -> None:
    log = FileIntake.open(tmp_path)
    await log.append("TGONE", "C1:1", {"n": 1})
    await log.append("TGONE", "C1:1", {"n": 2})  # an edit of the same message: replayed after
    await log.append("TKEPT", "C1:3", {"n": 3})
    await log.close()
    happened: list[str] = []
    first_started, release = asyncio.Event(), asyncio.Event()

    async def replay(team_id: str, payload: Payload) -> None:
        n = payload["n"]
        if n == 1:
            first_started.set()
            await release.wait()
        happened.append(f"{team_id} {n} archived")

    intake = Intake(FileIntake.open(tmp_path), Counts(), Backoff(first=0.01, cap=0.02))
    recovering = asyncio.create_task(intake.recover(replay, everyone))
    await first_started.wait()  # TGONE's first entry is being archived as the forgetting starts
    halting = asyncio.create_task(intake.halt_team("TGONE"))
    await asyncio.wait([halting], timeout=0.2)  # a halt that did not wait would be done by now
    happened.append("halt began")
    release.set()
    await halting
    happened.append("halted")
    intake.resume_team("TGONE")  # the forgetting is over
    await recovering
    await intake.close()
    assert happened.index("TGONE 1 archived") < happened.index("halted")
    assert "TGONE 2 archived" not in happened  # read before the halt: dropped, even after it
    assert "TKEPT 3 archived" in happened  # the control: another workspace's entry
    assert await left_in(tmp_path) == []


class DyingLeases:
    """The leases of a process that dies at once: taken, never renewed, so they lapse."""

    def __init__(self, redis: aioredis.Redis, prefix: str, ttl: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl

    async def acquire(self, name: str) -> Lease | None:
        lock = Lock(self._redis, self._prefix + name, timeout=self._ttl, thread_local=False)
        assert await lock.acquire(blocking=False)
        return NeverRenewed()


class NeverRenewed:
    def __init__(self) -> None:
        self._lost = asyncio.Event()

    @property
    def lost(self) -> asyncio.Event:
        return self._lost

    async def release(self) -> None:
        raise AssertionError("a dead process releases nothing")


async def test_a_live_process_adopts_the_streams_of_a_dead_one_but_not_of_a_live_one(
    redis_client: aioredis.Redis,
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix, lease_prefix = f"lore:test-intake:{run}:", f"lore:test-lease:{run}:"
    dying = await RedisIntake.open(
        redis_client, DyingLeases(redis_client, lease_prefix, ttl=1.0), prefix
    )
    live = await RedisIntake.open(
        redis_client, RedisLeases(redis_client, 5.0, lease_prefix), prefix
    )
    other = await RedisIntake.open(
        redis_client, RedisLeases(redis_client, 5.0, lease_prefix), prefix
    )
    try:
        kept = [await dying.append("T1", f"C1:{n}", {"n": n}) for n in range(3)]
        await dying.append("T2", "C2:1", {"n": 9})
        await dying.remove(kept[1])
        await other.append("T1", "C1:7", {"n": 7})  # a live process's entry: never adopted

        async def only_t1(team_id: str) -> bool:
            return team_id == "T1"

        async def adopted_once_lapsed() -> list[Adopted]:
            while True:
                if found := await live.adopt(only_t1):
                    return found
                await asyncio.sleep(0.1)

        [adopted] = await asyncio.wait_for(adopted_once_lapsed(), timeout=10)
        assert adopted.source == f"process {dying.owner}"
        assert [e.payload["n"] for e in adopted.entries] == [0, 2]
        assert await live.adopt(only_t1) == []  # held by this adopter until closed
        for entry in adopted.entries:
            await adopted.done(entry)
        await adopted.close()
        assert not await redis_client.exists(f"{prefix}T1:{dying.owner}")
        members = {m.decode() for m in await redis_client.smembers(prefix + "logs")}
        assert members == {f"T2:{dying.owner}", f"T1:{other.owner}"}  # T2: nobody served it
    finally:
        await live.close()
        await other.close()
        keys = [key async for key in redis_client.scan_iter(match=f"lore:test-*:{run}:*")]
        if keys:
            await redis_client.delete(*keys)


async def test_a_process_closing_with_entries_left_lets_them_be_adopted_at_once(
    redis_client: aioredis.Redis,
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix, lease_prefix = f"lore:test-intake:{run}:", f"lore:test-lease:{run}:"
    closing = await RedisIntake.open(
        redis_client, RedisLeases(redis_client, 60.0, lease_prefix), prefix
    )
    live = await RedisIntake.open(
        redis_client, RedisLeases(redis_client, 60.0, lease_prefix), prefix
    )
    try:
        done = await closing.append("T1", "C1:1", {"n": 1})
        await closing.append("T1", "C1:2", {"n": 2})
        await closing.remove(done)
        await closing.close()  # a long lease, given up: no waiting for it to lapse
        [adopted] = await live.adopt(everyone)
        assert [e.payload for e in adopted.entries] == [{"n": 2}]
        await adopted.close()
        # not done: the stream stays, for the next process to look
        assert await redis_client.xlen(f"{prefix}T1:{closing.owner}") == 1
    finally:
        await live.close()
        keys = [key async for key in redis_client.scan_iter(match=f"lore:test-*:{run}:*")]
        if keys:
            await redis_client.delete(*keys)


async def test_a_second_process_on_the_same_log_is_refused(tmp_path: Path) -> None:
    first = FileIntake.open(tmp_path)
    with pytest.raises(IntakeBusy, match="REDIS_URL"):
        FileIntake.open(tmp_path)
    await first.append("T1", "C1:1", {"n": 1})
    await first.close()
    again = FileIntake.open(tmp_path)  # free once the first is closed (or dead)
    [adopted] = await again.adopt(everyone)
    assert [e.payload for e in adopted.entries] == [{"n": 1}]
    await again.close()


async def test_a_stranded_entry_that_keeps_failing_holds_up_no_other(tmp_path: Path) -> None:
    """Stranded work is tried again in turn: one that always fails goes last each round, so the
    one stranded after it is handled (and its entry removed) while it stays kept."""
    intake = Intake(FileIntake.open(tmp_path), Counts(), adopt_every=0.01)
    broken = await intake.keep("T1", "C1:1", {"n": 1})
    fine = await intake.keep("T1", "C1:2", {"n": 2})
    handled: list[int] = []

    async def always_fails() -> None:
        raise ValueError("a message this version cannot store")

    async def succeeds() -> None:
        handled.append(2)

    async def replay(_team_id: str, _payload: Payload) -> None:
        raise AssertionError("stranded jobs run themselves, not the replay")

    intake.strand(broken, always_fails)
    intake.strand(fine, succeeds)
    intake.keep_adopting(replay, everyone)

    async def one_left() -> bool:
        return intake.pending == 1

    await eventually(one_left, within=10)
    assert handled == [2]
    assert intake.pending == 1 and intake.stranded == 1  # the broken one, still kept
    await intake.close()
    assert [payload for _, _, payload in await left_in(tmp_path)] == [{"n": 1}]
