"""The fake Anthropic server, driven by the real ``anthropic`` SDK over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest

from tests.fake_anthropic import (
    FakeAnthropic,
    PromptCache,
    delay,
    disconnect,
    error,
    estimate_input_tokens,
    reply,
    stream_error,
    text,
    tool_use,
)

MODEL = "claude-haiku-4-5"
SEARCH_TOOL: Any = {
    "name": "search_conversations",
    "description": "Search the workspace's past conversations.",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["query"],
    },
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = anthropic.AsyncAnthropic(
        api_key="test-key", base_url=fake.base_url, max_retries=0, timeout=5.0
    )
    yield c
    await c.close()


def user(content: Any) -> Any:
    return {"role": "user", "content": content}


def search_result(source: str, title: str, body: str) -> dict[str, Any]:
    return {
        "type": "search_result",
        "source": source,
        "title": title,
        "content": [{"type": "text", "text": body}],
        "citations": {"enabled": True},
    }


def tool_round_messages(tool_id: str, results: list[dict[str, Any]]) -> Any:
    """A conversation whose last user turn answers a search tool call with ``results``."""
    return [
        user("When does the deploy freeze start?"),
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": "search_conversations",
                    "input": {"query": "deploy freeze"},
                }
            ],
        },
        user([{"type": "tool_result", "tool_use_id": tool_id, "content": results}]),
    ]


TWO_RESULTS = [
    search_result("slack://C1/p1", "#eng 2024-05-01", "Deploy freeze begins Friday at noon."),
    search_result("slack://C2/p2", "#ops 2024-05-02", "The freeze lasts until Monday."),
]


async def test_non_streaming_text(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    fake.script(reply(text("Hello from the fake.")))
    msg = await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])

    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello from the fake."
    assert msg.stop_reason == "end_turn"
    assert msg.id.startswith("msg_")
    assert msg._request_id is not None and msg._request_id.startswith("req_")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.cache_creation_input_tokens == 0
    assert msg.usage.cache_read_input_tokens == 0
    assert fake.requests == [{"model": MODEL, "max_tokens": 64, "messages": [user("Hi")]}]
    # SDK 2.x sends the API key as a bearer token; older SDKs sent x-api-key.
    headers = fake.request_headers[0]
    assert (
        headers.get("authorization") == "Bearer test-key" or headers.get("x-api-key") == "test-key"
    )
    assert fake.request_headers[0]["anthropic-version"]
    assert fake.pending == 0


async def test_tool_use_round_trip(fake: FakeAnthropic, client: anthropic.AsyncAnthropic) -> None:
    fake.script(
        reply(tool_use("search_conversations", {"query": "deploy freeze"})),
        reply(text("The freeze starts Friday.")),
    )
    messages: list[Any] = [user("When is the deploy freeze?")]
    first = await client.messages.create(
        model=MODEL, max_tokens=256, tools=[SEARCH_TOOL], messages=messages
    )
    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use"
    assert call.name == "search_conversations" and call.input == {"query": "deploy freeze"}
    assert call.id.startswith("toolu_")

    messages += [
        {"role": "assistant", "content": first.content},
        user([{"type": "tool_result", "tool_use_id": call.id, "content": "Friday, noon."}]),
    ]
    second = await client.messages.create(
        model=MODEL, max_tokens=256, tools=[SEARCH_TOOL], messages=messages
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == "The freeze starts Friday."

    sent = fake.requests[1]["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use" and sent[1]["content"][0]["id"] == call.id
    assert sent[2]["content"][0]["tool_use_id"] == call.id
    assert fake.requests[1]["tools"][0]["name"] == "search_conversations"


async def test_streaming_text_matches_non_streamed(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    answer = "The deploy freeze starts on Friday at noon and lasts until Monday."
    fake.script(reply(text(answer)), reply(text(answer)))
    plain = await client.messages.create(model=MODEL, max_tokens=128, messages=[user("When?")])

    chunks: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=128, messages=[user("When?")]
    ) as stream:
        async for chunk in stream.text_stream:
            chunks.append(chunk)
        final = await stream.get_final_message()

    assert len(chunks) > 1, "text should arrive in several deltas"
    assert "".join(chunks) == answer
    assert [b.model_dump(exclude_none=True) for b in final.content] == [
        b.model_dump(exclude_none=True) for b in plain.content
    ]
    assert final.stop_reason == plain.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert fake.requests[1]["stream"] is True


async def test_streaming_tool_use_event_order(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    args = {"query": "déploiement freeze ✓", "limit": 5}
    fake.script(
        reply(text("Let me search."), tool_use("search_conversations", args, id="toolu_fixed")),
        reply(tool_use("search_conversations", args)),
    )
    raw = await client.messages.create(
        model=MODEL, max_tokens=128, tools=[SEARCH_TOOL], messages=[user("q")], stream=True
    )
    events: list[Any] = [event async for event in raw]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    json_parts = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len([p for p in json_parts if p]) > 1, "tool input should arrive in several chunks"
    start = next(e for e in events if e.type == "content_block_start" and e.index == 1)
    assert start.content_block.type == "tool_use" and start.content_block.id == "toolu_fixed"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "tool_use"

    async with client.messages.stream(
        model=MODEL, max_tokens=128, tools=[SEARCH_TOOL], messages=[user("q")]
    ) as stream:
        final = await stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and block.input == args
    assert final.stop_reason == "tool_use"


async def test_citations_of_search_results_in_both_modes(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(
        reply(text("It starts Friday.", citations=[0]), text(" It ends Monday.", citations=[1])),
        reply(text("It starts Friday.", citations=[0]), text(" It ends Monday.", citations=[1])),
    )
    messages: Any = tool_round_messages("toolu_abc", TWO_RESULTS)
    plain = await client.messages.create(
        model=MODEL, max_tokens=128, tools=[SEARCH_TOOL], messages=messages
    )
    async with client.messages.stream(
        model=MODEL, max_tokens=128, tools=[SEARCH_TOOL], messages=messages
    ) as stream:
        streamed = await stream.get_final_message()

    for msg in (plain, streamed):
        first, second = msg.content
        assert first.type == "text" and second.type == "text"
        assert first.citations is not None and second.citations is not None
        c0, c1 = first.citations[0], second.citations[0]
        assert c0.type == "search_result_location" and c1.type == "search_result_location"
        assert (c0.search_result_index, c0.source, c0.title) == (
            0,
            "slack://C1/p1",
            "#eng 2024-05-01",
        )
        assert c0.cited_text == "Deploy freeze begins Friday at noon."
        assert (c0.start_block_index, c0.end_block_index) == (0, 1)
        assert (c1.search_result_index, c1.source) == (1, "slack://C2/p2")
    assert [b.model_dump(exclude_none=True) for b in streamed.content] == [
        b.model_dump(exclude_none=True) for b in plain.content
    ]


async def test_bad_citation_index_is_loud(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(reply(text("Cites nothing real.", citations=[2])))
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL,
            max_tokens=64,
            tools=[SEARCH_TOOL],
            messages=tool_round_messages("toolu_x", TWO_RESULTS),
        )
    assert info.value.status_code == 400
    assert "fake anthropic" in info.value.message and "2 search_result" in info.value.message


async def test_scripted_tool_not_in_request_is_loud(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(reply(tool_use("delete_everything", {})))
    with pytest.raises(anthropic.BadRequestError, match="delete_everything"):
        await client.messages.create(
            model=MODEL, max_tokens=64, tools=[SEARCH_TOOL], messages=[user("q")]
        )


async def test_overloaded_then_success_is_retried(fake: FakeAnthropic) -> None:
    fake.script(error(529, "overloaded_error", "Overloaded"), reply(text("Recovered.")))
    client = fake.client(max_retries=2, timeout=5.0)
    msg = await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    await client.close()

    assert msg.content[0].type == "text" and msg.content[0].text == "Recovered."
    assert len(fake.requests) == 2
    assert fake.requests[0] == fake.requests[1]
    assert fake.request_headers[1].get("x-stainless-retry-count") == "1"


async def test_overloaded_error_shape_without_retries(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(anthropic.OverloadedError) as info:
        await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    assert info.value.status_code == 529
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": info.value.request_id,
    }
    assert info.value.request_id is not None and info.value.request_id.startswith("req_")


async def test_server_error_without_retries_raises(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(error(500, "api_error", "boom"), reply(text("never reached")))
    with pytest.raises(anthropic.InternalServerError) as info:
        await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    assert info.value.status_code == 500 and "boom" in info.value.message
    assert len(fake.requests) == 1 and fake.pending == 1


async def test_delay_beyond_client_timeout(fake: FakeAnthropic) -> None:
    fake.script(delay(5.0, then=reply(text("too late"))))
    client = fake.client(max_retries=0, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    await client.close()
    assert time.monotonic() - started < 2.0
    assert len(fake.requests) == 1


async def test_delay_within_timeout_answers(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(delay(0.2, then=reply(text("slow but fine"))))
    started = time.monotonic()
    msg = await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    assert time.monotonic() - started >= 0.2
    assert msg.content[0].type == "text" and msg.content[0].text == "slow but fine"


async def test_missing_tool_result_is_rejected(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(reply(text("unused")))
    messages: Any = [
        user("q"),
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "search_conversations", "input": {}}
            ],
        },
        user("I never answered the tool."),
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL, max_tokens=64, tools=[SEARCH_TOOL], messages=messages
        )
    assert "toolu_1" in info.value.message and "tool_result" in info.value.message
    assert fake.pending == 1, "a rejected request does not consume the script"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([{"role": "assistant", "content": "hi"}], "first message"),
        ([user("a"), user("b")], "alternate"),
        ([user("")], "non-empty"),
        (
            [user([{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}])],
            "unexpected `tool_use_id`",
        ),
    ],
)
async def test_message_shape_validation(
    client: anthropic.AsyncAnthropic, messages: Any, needle: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=needle):
        await client.messages.create(model=MODEL, max_tokens=64, messages=messages)


async def test_headers_and_required_fields_validated(fake: FakeAnthropic) -> None:
    url = f"{fake.base_url}/v1/messages"
    good = {"model": MODEL, "max_tokens": 10, "messages": [user("hi")]}
    fake.script(reply(text("ok")))
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=good, headers={"anthropic-version": "2023-06-01"}) as r:
            assert r.status == 401
            body = await r.json()
            assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
            assert r.headers["request-id"] == body["request_id"]
        async with http.post(url, json=good, headers={"x-api-key": "k"}) as r:
            assert r.status == 400 and "anthropic-version" in (await r.json())["error"]["message"]
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        for missing in ("model", "max_tokens", "messages"):
            partial = {k: v for k, v in good.items() if k != missing}
            async with http.post(url, json=partial, headers=headers) as r:
                err = (await r.json())["error"]
                assert r.status == 400 and err["type"] == "invalid_request_error"
                assert err["message"] == f"{missing}: Field required"
        async with http.post(url, json=good, headers=headers) as r:
            assert r.status == 200 and (await r.json())["content"][0]["text"] == "ok"


async def test_cache_control_on_system_is_accepted_and_recorded(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    system: Any = [
        {"type": "text", "text": "You are Lore."},
        {
            "type": "text",
            "text": "Workspace facts: ...",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        },
    ]
    fake.script(reply(text("cached"), usage={"cache_read_input_tokens": 120}))
    msg = await client.messages.create(
        model=MODEL, max_tokens=64, system=system, messages=[user("Hi")]
    )
    assert msg.usage.cache_read_input_tokens == 120
    assert fake.requests[0]["system"][1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}

    too_many: Any = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        await client.messages.create(
            model=MODEL, max_tokens=64, system=too_many, messages=[user("Hi")]
        )


async def test_unscripted_request_fails_loudly_without_retries(fake: FakeAnthropic) -> None:
    client = fake.client(max_retries=2, timeout=5.0)
    with pytest.raises(anthropic.InternalServerError, match="no scripted reply"):
        await client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    await client.close()
    assert len(fake.requests) == 1, "x-should-retry: false stops the SDK's retries"


async def test_async_responder_sees_the_request(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    async def echo(body: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        return reply(text(f"echo: {body['messages'][-1]['content']}"))

    fake.script(reply(text("scripted first")))
    fake.respond_with(echo)
    texts = []
    for prompt in ("one", "two", "three"):
        msg = await client.messages.create(model=MODEL, max_tokens=64, messages=[user(prompt)])
        assert msg.content[0].type == "text"
        texts.append(msg.content[0].text)
    assert texts == ["scripted first", "echo: two", "echo: three"]

    fake.reset()
    assert fake.requests == [] and fake.pending == 0
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(model=MODEL, max_tokens=64, messages=[user("x")])


async def test_mid_stream_error_event(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(
        stream_error("overloaded_error", "Overloaded", partial=reply(text("Partial answer")))
    )
    chunks: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(
            model=MODEL, max_tokens=64, messages=[user("Hi")]
        ) as stream:
            async for chunk in stream.text_stream:
                chunks.append(chunk)
    assert "".join(chunks) == "Partial answer"
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_wait_for_requests_and_count_tokens(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(delay(0.1, then=reply(text("a"))))
    task = asyncio.create_task(
        client.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    )
    seen = await fake.wait_for_requests(1, timeout=5)
    assert seen[0]["messages"] == [user("Hi")]
    assert (await task).content[0].type == "text"
    with pytest.raises(TimeoutError):
        await fake.wait_for_requests(2, timeout=0.1)

    counted = await client.messages.count_tokens(model=MODEL, messages=[user("x" * 400)])
    assert 90 <= counted.input_tokens <= 130
    assert len(fake.requests) == 1 and len(fake.count_tokens_requests) == 1


async def test_parallel_tool_uses_must_all_be_answered(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(
        reply(
            tool_use("search_conversations", {"query": "freeze"}, id="toolu_a"),
            tool_use("search_conversations", {"query": "release"}, id="toolu_b"),
        ),
        reply(text("Both answered.")),
    )
    first = await client.messages.create(
        model=MODEL, max_tokens=64, tools=[SEARCH_TOOL], messages=[user("q")]
    )
    assert [b.id for b in first.content if b.type == "tool_use"] == ["toolu_a", "toolu_b"]
    history: Any = [user("q"), {"role": "assistant", "content": first.content}]
    only_a = [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "x"}]
    with pytest.raises(anthropic.BadRequestError, match="toolu_b"):
        await client.messages.create(
            model=MODEL, max_tokens=64, tools=[SEARCH_TOOL], messages=[*history, user(only_a)]
        )
    both = [*only_a, {"type": "tool_result", "tool_use_id": "toolu_b", "content": "y"}]
    done = await client.messages.create(
        model=MODEL, max_tokens=64, tools=[SEARCH_TOOL], messages=[*history, user(both)]
    )
    assert done.content[0].type == "text" and done.content[0].text == "Both answered."


async def test_a_cut_connection_is_retried_before_an_answer_but_not_mid_stream(
    fake: FakeAnthropic,
) -> None:
    retrying = fake.client(max_retries=1)
    fake.script(disconnect(), reply(text("After the cut")))
    message = await retrying.messages.create(model=MODEL, max_tokens=64, messages=[user("Hi")])
    assert message.content[0].type == "text" and message.content[0].text == "After the cut"
    assert len(fake.requests) == 2

    fake.script(disconnect(partial=reply(text("Partial answer"))), reply(text("never asked")))
    chunks: list[str] = []
    with pytest.raises(anthropic.APIConnectionError):
        async with retrying.messages.stream(
            model=MODEL, max_tokens=64, messages=[user("Hi")]
        ) as stream:
            async for chunk in stream.text_stream:
                chunks.append(chunk)
    assert "".join(chunks) == "Partial answer"
    assert len(fake.requests) == 3 and len(fake.request_times) == 3
    await retrying.close()


# ---------------------------------------------------------------- prompt caching in usage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cached_request(system: str, question: str, *, model: str = MODEL) -> dict[str, Any]:
    return {
        "model": model,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [user(question)],
    }


async def test_usage_writes_a_marked_prefix_then_reads_it(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    long_rules = "Answer from the archive. " * 300  # well over 1024 tokens
    fake.script(reply(text("one")), reply(text("two")))
    body = cached_request(long_rules, "Hi")
    first = await client.messages.create(max_tokens=64, **body)
    second = await client.messages.create(max_tokens=64, **cached_request(long_rules, "Yo"))
    marked = first.usage.cache_creation_input_tokens
    assert first.usage.cache_read_input_tokens == 0 and marked > 1024
    assert second.usage.cache_read_input_tokens == marked
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens > 0  # the unmarked questions
    assert fake.usages[1]["cache_read_input_tokens"] == marked


def test_prefixes_under_the_minimum_are_never_cached() -> None:
    cache = PromptCache(clock=Clock())
    body = cached_request("Short rules.", "Hi")
    assert cache.usage(body)["cache_creation_input_tokens"] == 0
    again = cache.usage(body)
    assert again["cache_read_input_tokens"] == 0
    assert again["input_tokens"] == estimate_input_tokens(body)


def test_an_entry_lives_five_minutes_from_its_last_use_and_per_model() -> None:
    clock = Clock()
    cache = PromptCache(clock=clock)
    body = cached_request("Rules. " * 800, "Hi")
    written = cache.usage(body)["cache_creation_input_tokens"]
    clock.now += 299
    assert cache.usage(body)["cache_read_input_tokens"] == written  # and refreshed
    clock.now += 299
    assert cache.usage(body)["cache_read_input_tokens"] == written
    other = cache.usage(cached_request("Rules. " * 800, "Hi", model="claude-sonnet-4-6"))
    assert other["cache_read_input_tokens"] == 0
    clock.now += 301
    expired = cache.usage(body)
    assert expired["cache_read_input_tokens"] == 0
    assert expired["cache_creation_input_tokens"] == written


def test_a_later_step_reads_the_earlier_steps_prefix_through_the_lookback() -> None:
    cache = PromptCache(clock=Clock())
    rules = [{"type": "text", "text": "Rules. " * 800}]
    question = {"role": "user", "content": [mark({"type": "text", "text": "When?"})]}
    step_one = {"model": MODEL, "system": rules, "messages": [question]}
    first = cache.usage(step_one)
    assert first["cache_creation_input_tokens"] == estimate_input_tokens(step_one)
    answer = {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}]}
    more = {"role": "user", "content": [mark({"type": "text", "text": "Go on."})]}
    plain_question = {"role": "user", "content": "When?"}  # the same block, unmarked now
    step_two = {"model": MODEL, "system": rules, "messages": [plain_question, answer, more]}
    second = cache.usage(step_two)
    assert second["cache_read_input_tokens"] == estimate_input_tokens(step_one)
    total = estimate_input_tokens(step_two)
    assert second["cache_creation_input_tokens"] == total - estimate_input_tokens(step_one)
    assert second["input_tokens"] == 0


def mark(block: dict[str, Any]) -> dict[str, Any]:
    return {**block, "cache_control": {"type": "ephemeral"}}
