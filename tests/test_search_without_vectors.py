"""Search while the vector store is away: a question asked while the Chroma server is down is
answered from the lexical index, under the same access rule, and the metric counts it."""

from __future__ import annotations

from pathlib import Path

from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use
from tests.harness import archived, lore_settings, settled, start_lore_on, tool_result_text
from tests.processes import ChromaServer

BOT = "<@U0LORE>"


async def test_a_question_is_answered_lexically_while_the_chroma_server_is_down(
    team_emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> None:
    emulator = team_emulator
    team = emulator.config.team_id
    chroma = ChromaServer(tmp_path / "chroma")
    chroma.start()
    lore = await start_lore_on(emulator, lore_settings(tmp_path, fake_llm, chroma_url=chroma.url))
    try:
        emulator.add_channel("C0PLANS", "plans", is_private=True, members=["U0CAROL"])
        await emulator.post_message("U0BOB", "C0GENERAL", "The offsite is in Lisbon in June.")
        await emulator.post_message("U0CAROL", "C0PLANS", "The offsite in Lisbon costs 90k.")
        await archived(lore, team, 2)
        chroma.stop()

        fake_llm.script(
            reply(tool_use("search_conversations", {"query": "offsite Lisbon"})),
            reply(text("The offsite is in Lisbon.", citations=[0])),
        )
        asked = await emulator.post_message("U0ALICE", "C0RANDOM", f"{BOT} where is the offsite?")
        [answer] = await emulator.wait_for_reply("C0RANDOM", asked["ts"], timeout=30)
        assert "The offsite is in Lisbon." in str(answer)
        assert "went wrong" not in str(answer)
        found = tool_result_text(fake_llm.requests[-1])
        assert "Lisbon in June" in found  # the public channel's message, found lexically
        assert "90k" not in found  # the private channel's stays with its members
        assert lore.stores.archive.searches_without_vectors >= 1
        exposition = (await lore.services.metrics.exposition("text/plain"))[0].decode()
        assert "lore_search_without_vectors_total 1.0" in exposition
    finally:
        chroma.start()  # so that Lore's archived reply is stored before it stops
        await settled(emulator, lore)
        await lore.stop()
        chroma.stop()
