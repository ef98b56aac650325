"""The playground in headless Chromium (Debian's package, driven by Playwright; no browser is
ever downloaded): Lore in local mode with the fake Messages API, the whole path for real.

Screenshots go to test-output/playground/ (ignored by git).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.local import start_local_slack
from app.main import Lore, start_lore
from emulator import SlackEmulator
from emulator.playground import demo
from tests.conftest import ROOT
from tests.fake_anthropic import FakeAnthropic, delay, reply, text, tool_use
from tests.harness import archived, lore_settings, system_text, user_text

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUT = ROOT / "test-output" / "playground"
WAIT = 20_000  # ms, for what goes through Lore and the model

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: `python tests/ensure_services.py` installs Debian's chromium",
)


@pytest.fixture
async def local_lore(
    tmp_path: Path, fake_llm: FakeAnthropic
) -> AsyncIterator[tuple[Lore, SlackEmulator]]:
    """Lore as `make run` starts it without Slack credentials, but on free ports."""
    settings = lore_settings(
        tmp_path / "data", fake_llm, redis_url=None, lore_emulator_port=0, lore_model_timeout=20.0
    )
    lore = await start_lore(settings)
    emulator = await start_local_slack(lore)
    yield lore, emulator
    await lore.stop()
    await emulator.stop()


def requests_saying(fake: FakeAnthropic, words: str) -> list[dict[str, object]]:
    return [request for request in fake.requests if words in user_text(request)]


async def test_two_threads_memory_and_recall_in_the_browser(
    local_lore: tuple[Lore, SlackEmulator], fake_llm: FakeAnthropic
) -> None:
    lore, emulator = local_lore
    expect = playwright_api.expect
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    await archived(lore, "T0LORE", demo.message_count())

    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            # Lore's own address leads to the emulator's page.
            await page.goto(lore.url + "/")
            assert page.url.startswith(emulator.url + "/")
            await expect(page.locator("body")).to_have_attribute("data-ready", "yes")
            await expect(page.locator("#mode")).to_contain_text("Agent mode")
            nav = page.get_by_role("navigation", name="Conversations")
            for name in ("general", "deploys", "oncall", "customers", "leadership"):
                await expect(nav.get_by_role("link", name=name)).to_be_visible()
            await expect(page.locator("#agent-summary")).to_contain_text(
                f"{demo.message_count()} messages archived"
            )
            await page.evaluate("window.notReloaded = true")

            # Thread A: Alice asks in #general; Lore searches and answers with a source link.
            fake_llm.script(
                reply(tool_use("search_conversations", {"query": "production deploy Fridays"})),
                reply(text("No production deploys on Fridays after 14:00 UTC.", citations=[0])),
            )
            composer = page.get_by_label("Message #general")
            await composer.fill("@Lore when can't we deploy?")
            await composer.press("Enter")
            thread = page.locator("#thread")
            await expect(thread).to_be_visible()
            answer = thread.locator(".message.from-bot").first
            await expect(answer).to_contain_text("No production deploys on Fridays", timeout=WAIT)
            cited = fake_llm.requests[1]["messages"][-1]["content"][0]["content"][0]["source"]
            source = answer.locator("a.permalink")
            await expect(source).to_have_attribute("href", cited)
            assert re.search(r"/archives/C0[A-Z]+/p\d{16}", cited)
            asked = emulator.messages("C0GENERAL")[-1]
            assert asked["text"] == "<@U0LORE> when can't we deploy?"  # typed @Lore -> mention
            thread_a = asked["ts"]
            await page.screenshot(path=OUT / "01-thread-a-answer-with-source.png")

            # The source link opens the message it cites, in the page.
            await source.click()
            await expect(page.locator(".message.highlight").first).to_be_visible()
            await page.go_back()
            await expect(thread.locator(".message").first).to_contain_text("when can't we deploy")

            # Teach something in thread A; the memory panel shows it without a reload.
            fake_llm.script(
                reply(
                    tool_use(
                        "memory_insert",
                        {"label": "org", "text": "The staging database is called tern."},
                    )
                ),
                reply(text("Noted: the staging database is called tern.")),
            )
            thread_box = page.get_by_label("Reply in thread")
            await thread_box.fill("@Lore remember: the staging database is called tern")
            await thread_box.press("Enter")
            org = page.locator("#block-org")
            await expect(org).to_contain_text("The staging database is called tern.", timeout=WAIT)
            await expect(org.locator(".block-meta")).to_contain_text("v2")
            await org.locator("summary").click()
            await expect(org.locator(".diff .add").first).to_contain_text(
                "The staging database is called tern."
            )
            await expect(page.locator("#conversations")).to_contain_text("when can't we deploy?")
            assert await page.evaluate("window.notReloaded === true")  # no reload happened
            await page.screenshot(path=OUT / "02-memory-updated.png")

            # Two threads at once: A's next answer is slow; Bob asks in thread B meanwhile.
            slow = "On Saturdays deploys are allowed, with a second approver."
            long_answer = (
                "It is called tern. Carol owns it, and it is reset every night at 02:00 UTC "
                "by the seed-staging job, so do not keep anything there that you need to "
                "survive the night. Ask in #deploys if the reset fails."
            )
            fake_llm.script(
                delay(9.0, reply(text(slow))), reply(text(long_answer), chunk_delay=0.4)
            )
            requests_before = len(fake_llm.requests)
            await thread_box.fill("and on Saturdays?")
            await thread_box.press("Enter")
            await fake_llm.wait_for_requests(requests_before + 1)
            await expect(page.locator("#thread-status")).to_contain_text("Lore is thinking")

            await page.get_by_label("Posting as").select_option("U0BOB")
            await expect(nav.get_by_role("link", name="leadership")).to_have_count(0)  # private
            await nav.get_by_role("link", name="deploys").click()
            composer = page.get_by_label("Message #deploys")
            await composer.fill("@Lore what is the staging database called?")
            await composer.press("Enter")
            answer_b = page.locator("#thread .message.from-bot").first
            await expect(answer_b).to_have_class(re.compile(r"\bstreaming\b"), timeout=WAIT)
            await page.screenshot(path=OUT / "03-thread-b-streaming.png")
            await expect(answer_b).to_contain_text("Ask in #deploys", timeout=WAIT)
            await expect(answer_b).not_to_have_class(re.compile(r"\bstreaming\b"))
            # A is still being answered while B is done.
            assert len(emulator.bot_replies("C0GENERAL", thread_a)) == 2
            (asked_b,) = requests_saying(fake_llm, "what is the staging database called?")
            assert "The staging database is called tern." in system_text(asked_b)
            replies_a = await emulator.wait_for_reply("C0GENERAL", thread_a, count=3, timeout=20)
            assert slow in replies_a[2]["text"]

            # /recall answers only the person who asked.
            fake_llm.script(reply(text("Not on Fridays after 14:00 UTC.")))
            await composer.fill("/recall deploy freeze")
            await composer.press("Enter")
            recall = page.locator("#messages .message.ephemeral")
            await expect(recall).to_contain_text("Only visible to you")
            await expect(recall).to_contain_text("Not on Fridays after 14:00 UTC.", timeout=WAIT)
            await expect(recall.get_by_role("link", name="Open").first).to_be_visible()
            await page.screenshot(path=OUT / "04-recall-ephemeral.png")
            await page.get_by_label("Posting as").select_option("U0CAROL")
            await expect(page.locator("#messages .message.ephemeral")).to_have_count(0)

            # A DM with Lore needs no mention; Escape closes the thread.
            fake_llm.script(reply(text("Hi Carol, ask me anything about Kestrel Labs.")))
            await nav.get_by_role("link", name="Lore").click()
            composer = page.get_by_label("Message Lore")
            await composer.fill("hello there")
            await composer.press("Enter")
            await expect(page.locator("#thread .message.from-bot")).to_contain_text(
                "Hi Carol", timeout=WAIT
            )
            await page.get_by_label("Reply in thread").press("Escape")
            await expect(thread).to_be_hidden()
            await expect(composer).to_be_focused()

            # Search over the archive (admin view) from Lore's side.
            await page.get_by_label("Search every channel (admin view)").fill("PgBouncer pool")
            await page.get_by_label("Search every channel (admin view)").press("Enter")
            await expect(page.locator("#search-results .result").first).to_contain_text("PgBouncer")

            # The picture for the README: Alice in thread A, memory history open.
            await page.get_by_label("Posting as").select_option("U0ALICE")
            await page.goto(f"{emulator.url}/#/C0GENERAL/{thread_a}")
            await page.reload()
            await expect(page.locator("body")).to_have_attribute("data-ready", "yes")
            await expect(page.locator("#thread .message.from-bot")).to_have_count(3)
            await page.locator("#block-org summary").click()
            await expect(page.locator("#block-org .diff .add").first).to_be_visible()
            await page.screenshot(path=OUT / "playground.png")
            assert errors == []
        finally:
            await browser.close()
