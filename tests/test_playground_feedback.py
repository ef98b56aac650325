"""Feedback buttons in the playground (headless Chromium): shown under the answer, pressable."""

from __future__ import annotations

from app.main import Lore
from emulator import SlackEmulator
from tests.fake_anthropic import FakeAnthropic, reply, text
from tests.harness import eventually
from tests.test_playground_browser import (  # noqa: F401 - local_lore is a fixture
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT,
    local_lore,
    playwright_api,
    pytestmark,
)


async def test_answer_shows_feedback_buttons_and_a_press_is_confirmed_to_the_presser(
    local_lore: tuple[Lore, SlackEmulator],  # noqa: F811 - the fixture imported above
    fake_llm: FakeAnthropic,
) -> None:
    lore, _ = local_lore
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            await page.goto(lore.url + "/")
            await expect(page.locator("body")).to_have_attribute("data-ready", "yes")
            fake_llm.script(reply(text("Deploys freeze on Fridays.")))
            composer = page.get_by_label("Message #general")
            await composer.fill("@Lore when do deploys freeze?")
            await composer.press("Enter")
            answer = page.locator("#thread .message.from-bot").first
            await expect(answer).to_contain_text("Deploys freeze on Fridays.", timeout=WAIT)
            await answer.get_by_role("button", name="👍").click()
            confirmation = page.locator("#thread .message.ephemeral")
            await expect(confirmation).to_contain_text("Thanks — marked helpful.", timeout=WAIT)
            await expect(answer).to_contain_text("Deploys freeze on Fridays.")

            async def counted() -> bool:
                return await lore.stores.feedback.counts("T0LORE") == (1, 0)

            await eventually(counted)
            assert not errors, errors
        finally:
            await browser.close()
