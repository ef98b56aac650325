"""End to end: a follow-up turn reads its thread from the archive, and from Slack only where
the archive cannot vouch for the whole thread (an excluded channel, a message still on its way
into the archive)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from app.main import Lore
from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import eventually, settled, user_text
from tests.test_metrics import scrape, value

TEAM = "T0LORE"
BOT = "<@U0LORE>"


def replies_calls(emulator: SlackEmulator, since: int) -> list[dict[str, Any]]:
    return [args for method, args in emulator.calls[since:] if method == "conversations.replies"]


def assistant_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in request["messages"] if m["role"] == "assistant")


async def answered_thread(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic, channel: str
) -> str:
    """A thread in `channel` with two messages and Lore's answer to a mention; its ts."""
    parent = await emulator.post_message("U0BOB", channel, "Planning the Q3 launch here.")
    await emulator.post_message("U0CAROL", channel, "Marketing wants the 14th.", parent["ts"])
    await emulator.drain()  # delivered (so queued) before the mention: Lore has not replied yet
    fake_llm.script(reply(text("The launch is planned for the 14th.")))
    await emulator.post_message("U0ALICE", channel, f"{BOT} when is the launch?", parent["ts"])
    await emulator.wait_for_reply(channel, parent["ts"], timeout=20)
    await settled(emulator, lore)
    return str(parent["ts"])


async def test_follow_up_in_an_archived_thread_reads_the_archive_not_slack(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    thread_ts = await answered_thread(lore, emulator, fake_llm, "C0GENERAL")
    stored = await lore.stores.archive.thread(TEAM, "C0GENERAL", thread_ts)
    assert [m.is_bot for m in stored] == [False, False, False, True]  # Lore's answer is kept
    since = len(emulator.calls)
    statements: list[str] = []
    engine = lore.stores.engine.sync_engine

    def watch(*args: Any) -> None:
        statements.append(" ".join(str(args[2]).split()))

    event.listen(engine, "before_cursor_execute", watch)
    fake_llm.script(reply(text("Yes, still the 14th.")))
    await emulator.post_message("U0ALICE", "C0GENERAL", "is that still true?", thread_ts)
    replies = await emulator.wait_for_reply("C0GENERAL", thread_ts, count=2, timeout=20)
    await settled(emulator, lore)
    event.remove(engine, "before_cursor_execute", watch)
    assert "still the 14th" in replies[1]["text"]
    assert replies_calls(emulator, since) == []
    looked_up = [s for s in statements if s.startswith("SELECT") and "FROM conversations" in s]
    assert len(looked_up) == 1  # the rule's look-up hands its row to the turn
    summaries = [s for s in statements if s.startswith("SELECT") and "FROM thread_summaries" in s]
    assert summaries == []  # the thread fits whole: no summary of it is looked for
    follow_up = fake_llm.requests[-1]
    history = user_text(follow_up)
    assert "Planning the Q3 launch here." in history
    assert "Marketing wants the 14th." in history
    assert "when is the launch?" in history
    assert "is that still true?" in history
    assert "The launch is planned for the 14th." in assistant_text(follow_up)


async def test_follow_up_in_an_excluded_channel_reads_slack(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    await lore.services.app_home.exclusions.exclude(TEAM, "C0RANDOM", "U0CAROL")
    thread_ts = await answered_thread(lore, emulator, fake_llm, "C0RANDOM")
    assert await lore.stores.archive.thread(TEAM, "C0RANDOM", thread_ts) == []
    since = len(emulator.calls)
    fake_llm.script(reply(text("Yes, still the 14th.")))
    await emulator.post_message("U0ALICE", "C0RANDOM", "is that still true?", thread_ts)
    await emulator.wait_for_reply("C0RANDOM", thread_ts, count=2, timeout=20)
    assert [call["channel"] for call in replies_calls(emulator, since)] == ["C0RANDOM"]
    reads = await scrape(lore)  # the mention's turn and the follow-up's
    assert value(reads, "lore_thread_reads_total", source="slack") == 2
    assert value(reads, "lore_thread_reads_total", source="archive") == 0
    follow_up = fake_llm.requests[-1]
    assert "Marketing wants the 14th." in user_text(follow_up)
    assert "The launch is planned for the 14th." in assistant_text(follow_up)


async def test_follow_up_after_a_message_not_yet_archived_reads_slack(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    thread_ts = await answered_thread(lore, emulator, fake_llm, "C0GENERAL")
    emulator.add_user("U0DAVE", "dave", real_name="Dave Diaz")
    # Dave's name lookup is rate limited: his message waits on its way into the archive
    emulator.fail_method("users.info", "ratelimited", retry_after=8)
    fake_llm.script(reply(text("Noted, Dave.")), reply(text("It moved to the 21st.")))
    since = len(emulator.calls)
    await emulator.post_message("U0DAVE", "C0GENERAL", "Legal moved it to the 21st.", thread_ts)

    async def held() -> bool:
        return any(m == "users.info" and a.get("user") == "U0DAVE" for m, a in emulator.calls)

    await eventually(held)
    await emulator.post_message("U0ALICE", "C0GENERAL", "is that still true?", thread_ts)
    await emulator.wait_for_reply("C0GENERAL", thread_ts, count=3, timeout=20)
    # Dave's turn had every earlier message archived; Alice's did not have Dave's
    assert [call["channel"] for call in replies_calls(emulator, since)] == ["C0GENERAL"]
    dave_turn, alice_turn = fake_llm.requests[-2:]
    assert "Legal moved it to the 21st." in user_text(dave_turn)
    assert "Legal moved it to the 21st." in user_text(alice_turn)
    assert "is that still true?" in user_text(alice_turn)
    assert "Planning the Q3 launch here." in user_text(alice_turn)


async def test_a_follow_up_turn_reads_its_stable_prefix_and_its_first_step_from_cache(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": "launch date"})),
        reply(text("Nothing on the launch yet.")),
    )
    asked = await emulator.post_message("U0ALICE", "C0GENERAL", f"{BOT} when is the launch?")
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], timeout=20)
    await settled(emulator, lore)
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": "launch moved"})),
        reply(text("Still nothing.")),
    )
    await emulator.post_message("U0ALICE", "C0GENERAL", "did it move?", asked["ts"])
    await emulator.wait_for_reply("C0GENERAL", asked["ts"], count=2, timeout=20)
    first, step, follow_up, follow_up_step = fake_llm.usages
    assert first["cache_read_input_tokens"] == 0  # first sight: written
    assert first["cache_creation_input_tokens"] == prompt_tokens(first)
    assert step["cache_read_input_tokens"] == prompt_tokens(first)  # the turn's first step
    # the follow-up shares tools, rules and memory with the first turn, not its conversation
    assert 1024 <= follow_up["cache_read_input_tokens"] < prompt_tokens(first)
    assert follow_up_step["cache_read_input_tokens"] == prompt_tokens(follow_up)
    read = sum(u["cache_read_input_tokens"] for u in (follow_up, follow_up_step))
    assert read >= 0.6 * sum(prompt_tokens(u) for u in (follow_up, follow_up_step))
    metrics = await scrape(lore)  # Lore counts what the API reported, and where it read
    for kind, key in (("cache_read", "cache_read_input_tokens"), ("input", "input_tokens")):
        reported = sum(u[key] for u in fake_llm.usages)
        assert value(metrics, "lore_model_tokens_total", kind=kind) == reported
    assert value(metrics, "lore_thread_reads_total", source="archive") == 1
    assert value(metrics, "lore_thread_reads_total", source="slack") == 0


def prompt_tokens(usage: dict[str, int]) -> int:
    return (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
