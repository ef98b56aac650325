"""Lore pings nobody who did not ask: no text it posts (streamed, finished, the sources footer,
retrieval-only answers, /recall, App Home) mentions a quoted author or broadcasts, whoever wrote
the mention: the quoted message, or the model itself."""

from __future__ import annotations

import json
from typing import Any

from app.main import Lore
from emulator import SlackEmulator
from handlers.quiet_text import JOINER
from memory.blocks import MemoryScope
from memory.edits import Insert
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import archived_message, eventually
from tests.test_e2e_recall import all_text, final_answer

BOT = "<@U0LORE>"
POSTING = {
    "chat.postMessage",
    "chat.update",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "views.publish",
}
LOUD = ("<@U0BOB", "<@U0CAROL", "<!channel", "<!here", "<!everyone", "<!subteam", "@everyone")
ANNOUNCEMENT = "<!channel> Deploy freeze starts Friday; ask <@U0CAROL> or <!subteam^S0OPS|@ops>."


def posted_texts(emulator: SlackEmulator) -> str:
    """Everything Lore sent Slack to show people: posts, streams, updates, views, /recall."""
    sent = [json.dumps(args) for method, args in emulator.calls if method in POSTING]
    sent += [json.dumps(r["body"]) for r in emulator.command_responses if r["via"] != "ack"]
    return "\n".join(sent)


async def test_model_answers_and_their_sources_ping_nobody_but_the_asker(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    said = await emulator.post_message("U0BOB", "C0GENERAL", ANNOUNCEMENT)
    await archived_message(lore, "T0LORE", "C0GENERAL", said["ts"])
    fake_llm.script(
        reply(tool_use("search_conversations", {"query": "deploy freeze"})),
        reply(
            text("Hi <@U0ALICE>: per <@U0BOB> (<!here>) the freeze starts Friday; ask <@U0CA"),
            text("ROL> or <!subteam^S0OPS|@ops>, @everyone knows.", citations=[0]),
        ),
    )
    asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} when is the deploy freeze?")
    answer = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]["text"]

    sent = posted_texts(emulator)
    assert "chat.startStream" in {method for method, _ in emulator.calls}  # it was streamed
    assert not [loud for loud in LOUD if loud in sent], sent
    assert "<@U0ALICE>" in answer  # addressing the asker is fine: they asked
    assert "per Bob Brown" in answer and "ask Carol Chen or @\u2060ops" in answer
    assert "Bob Brown in <#C0GENERAL>" in answer  # the footer names the author, links the channel
    assert said["permalink"] in answer
    # the archived copy of the answer is as quiet as what was posted
    archived = await archived_message(lore, "T0LORE", "C0RANDOM", asked_reply_ts(emulator, asked))
    assert not [loud for loud in LOUD if loud in archived.text]


def asked_reply_ts(emulator: SlackEmulator, asked: dict[str, Any]) -> str:
    return str(emulator.bot_replies("C0RANDOM", asked["ts"])[0]["ts"])


async def test_retrieval_only_answers_recall_and_app_home_ping_nobody(
    lore_retrieval_only: Lore, emulator: SlackEmulator
) -> None:
    said = await emulator.post_message("U0BOB", "C0GENERAL", ANNOUNCEMENT)
    await archived_message(lore_retrieval_only, "T0LORE", "C0GENERAL", said["ts"])
    await lore_retrieval_only.stores.blocks.edit(
        "T0LORE",
        "org",
        Insert("Escalations: <!here> then <@U0CAROL>"),
        user_id="U0BOB",
        scope=MemoryScope.everything(),
    )

    asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} deploy freeze")
    answer = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]["text"]
    await emulator.send_command("U0ALICE", "C0RANDOM", "/recall", "deploy freeze")
    recalled = all_text(await final_answer(emulator, 1))
    await emulator.open_app_home("U0CAROL")
    await eventually(_published(emulator, "U0CAROL"))

    sent = posted_texts(emulator)
    assert not [loud for loud in LOUD if loud in sent], sent
    assert "Bob Brown in <#C0GENERAL>" in answer and "Deploy freeze starts Friday" in answer
    assert "Bob Brown in <#C0GENERAL>" in recalled and "ask Carol Chen" in recalled
    home = json.dumps(emulator.views["U0CAROL"], ensure_ascii=False)
    assert "by Bob Brown" in home  # who changed memory, by name


def _published(emulator: SlackEmulator, user: str) -> Any:
    async def published() -> bool:
        return "by Bob" in json.dumps(emulator.views.get(user, {}))

    return published


async def test_posted_instead_of_streamed_the_answer_is_as_quiet(
    lore: Lore, emulator: SlackEmulator, fake_llm: FakeAnthropic
) -> None:
    emulator.fail_method("chat.startStream", "not_allowed", times=5)
    fake_llm.script(
        reply(text("Per <@U0BOB>: <!channel> the freeze starts Friday, ask <@U0C"), text("AROL>."))
    )
    asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} when is the freeze?")
    answer = (await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=20))[0]["text"]

    assert "chat.postMessage" in {method for method, _ in emulator.calls}
    assert not [loud for loud in LOUD if loud in posted_texts(emulator)]
    assert answer.startswith(f"Per Bob Brown: @{JOINER}channel the freeze starts Friday")
    assert "ask Carol Chen." in answer
