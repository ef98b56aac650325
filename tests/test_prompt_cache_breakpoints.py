"""Where a turn's requests put their prompt-cache breakpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.agent import prompt
from app.agent.tools import TOOLS
from memory.blocks import Block
from tests.fake_anthropic import validate_request

QUESTION = {"role": "user", "content": "When is the launch?"}
EARLIER = {"role": "assistant", "content": "It was the 14th."}


def block(label: str, value: str) -> Block:
    return Block(label, value, 1, 2000, datetime.now(UTC), None, None, "insert")


def marked(messages: list[dict[str, Any]]) -> list[int]:
    return [
        i
        for i, m in enumerate(messages)
        if isinstance(m["content"], list) and any("cache_control" in b for b in m["content"])
    ]


def tool_round(n: int) -> list[dict[str, Any]]:
    use = {"type": "tool_use", "id": f"toolu_{n}", "name": "search_conversations", "input": {}}
    result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "nothing"}
    return [{"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}]


def test_each_step_marks_the_asked_message_and_from_the_third_the_last_too() -> None:
    thread = [{"role": "user", "content": "Planning here."}, EARLIER, QUESTION]
    asked = 2
    first = prompt.with_cache_breakpoints(thread, asked=asked, step=0)
    assert marked(first) == [2]
    assert first[2]["content"] == [
        {"type": "text", "text": "When is the launch?", "cache_control": {"type": "ephemeral"}}
    ]
    assert thread[2] == QUESTION  # the turn's own list is left unmarked
    second = prompt.with_cache_breakpoints(thread + tool_round(1), asked=asked, step=1)
    assert marked(second) == [2]
    longer = thread + tool_round(1) + tool_round(2)
    third = prompt.with_cache_breakpoints(longer, asked=asked, step=2)
    assert marked(third) == [2, 6]
    assert third[6]["content"][-1]["cache_control"] == {"type": "ephemeral"}


def test_a_request_stays_within_the_apis_four_breakpoints() -> None:
    blocks = [block("persona", "I am Lore."), block("org", "Deploys on Tuesdays.")]
    system = prompt.system_blocks(blocks)
    assert [b.get("cache_control") for b in system] == [{"type": "ephemeral"}] * 2
    messages = [QUESTION, *tool_round(1), *tool_round(2)]
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "system": system,
        "tools": TOOLS,
        "messages": prompt.with_cache_breakpoints(messages, asked=0, step=2),
    }
    validate_request(body)  # raises on a fifth breakpoint
    assert not any("cache_control" in tool for tool in TOOLS)
