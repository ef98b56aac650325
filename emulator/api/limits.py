"""Slack's size limits on messages, blocks, views and streams, refused with Slack's errors.

A message's `text` over 40,000 characters is `msg_too_long`; a stream's `markdown_text` over
12,000 characters in one call, or a streamed message grown past 40,000, is `msg_too_long` too.
Blocks that break Block Kit's limits are `invalid_blocks` in a message and `invalid_arguments`
in a view, with Slack's `[ERROR] … [json-pointer:…]` lines in `response_metadata.messages`.
"""

from __future__ import annotations

from typing import Any

from emulator.api.base import ApiError

MESSAGE_TEXT = 40_000
STREAM_TEXT = 12_000
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100

SECTION_TEXT = 3_000
SECTION_FIELDS = 10
FIELD_TEXT = 2_000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2_000
URL_CHARS = 3_000
INPUT_CHARS = 3_000
MARKDOWN_BLOCK_TEXT = 12_000
VIEW_TITLE = 24
PRIVATE_METADATA = 3_000
OPTION_TEXT = 75
OPTION_VALUE = 150
OPTIONS = 100


class LimitError(ApiError):
    """An answer refusing a call that broke one of Slack's size limits."""

    def __init__(self, error: str, messages: list[str]) -> None:
        super().__init__(error, response_metadata={"messages": messages})
        self.messages = messages


def check_message_text(text: str | None) -> None:
    """`msg_too_long` for message text over 40,000 characters."""
    if text is not None and len(text) > MESSAGE_TEXT:
        raise LimitError("msg_too_long", [_too_long(MESSAGE_TEXT, "/text")])


def check_stream_text(addition: str, so_far: str = "") -> None:
    """`msg_too_long` for over 12,000 characters in one stream call or a message over 40,000."""
    if len(addition) > STREAM_TEXT:
        raise LimitError("msg_too_long", [_too_long(STREAM_TEXT, "/markdown_text")])
    if len(so_far) + len(addition) > MESSAGE_TEXT:
        raise LimitError("msg_too_long", [_too_long(MESSAGE_TEXT, "/text")])


def check_message_blocks(blocks: Any) -> None:
    """`invalid_blocks` for more than 50 blocks or a block over its limits."""
    _check_blocks(blocks, MESSAGE_BLOCKS, "/blocks", "invalid_blocks")


def check_view(view: Any) -> None:
    """`invalid_arguments` for a view with more than 100 blocks or a block over its limits."""
    if not isinstance(view, dict):
        return
    problems: list[str] = []
    title = view.get("title")
    if isinstance(title, dict):
        _text(problems, title, VIEW_TITLE, "/view/title")
    metadata = view.get("private_metadata")
    if isinstance(metadata, str) and len(metadata) > PRIVATE_METADATA:
        problems.append(_too_long(PRIVATE_METADATA, "/view/private_metadata"))
    if problems:
        raise LimitError("invalid_arguments", problems)
    _check_blocks(view.get("blocks"), VIEW_BLOCKS, "/view/blocks", "invalid_arguments")


def _check_blocks(blocks: Any, most: int, pointer: str, error: str) -> None:
    if not isinstance(blocks, list):
        return
    problems: list[str] = []
    if len(blocks) > most:
        problems.append(f"[ERROR] no more than {most} items allowed [json-pointer:{pointer}]")
    markdown = 0
    for index, block in enumerate(blocks):
        if isinstance(block, dict):
            _check_block(problems, block, f"{pointer}/{index}")
            if block.get("type") == "markdown":
                markdown += len(str(block.get("text", "")))
    if markdown > MARKDOWN_BLOCK_TEXT:
        problems.append(_too_long(MARKDOWN_BLOCK_TEXT, pointer))
    if problems:
        raise LimitError(error, problems)


def _check_block(problems: list[str], block: dict[str, Any], at: str) -> None:
    kind = block.get("type")
    if kind == "section":
        if isinstance(block.get("text"), dict):
            _text(problems, block["text"], SECTION_TEXT, f"{at}/text")
        fields = block.get("fields") or []
        if len(fields) > SECTION_FIELDS:
            problems.append(_too_many(SECTION_FIELDS, f"{at}/fields"))
        for i, field in enumerate(fields):
            if isinstance(field, dict):
                _text(problems, field, FIELD_TEXT, f"{at}/fields/{i}")
        if isinstance(block.get("accessory"), dict):
            _check_element(problems, block["accessory"], f"{at}/accessory")
    elif kind == "header" and isinstance(block.get("text"), dict):
        _text(problems, block["text"], HEADER_TEXT, f"{at}/text")
    elif kind == "context":
        elements = block.get("elements") or []
        if len(elements) > CONTEXT_ELEMENTS:
            problems.append(_too_many(CONTEXT_ELEMENTS, f"{at}/elements"))
        for i, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") in ("mrkdwn", "plain_text"):
                _text(problems, element, SECTION_TEXT, f"{at}/elements/{i}")
    elif kind == "actions":
        elements = block.get("elements") or []
        if len(elements) > ACTIONS_ELEMENTS:
            problems.append(_too_many(ACTIONS_ELEMENTS, f"{at}/elements"))
        for i, element in enumerate(elements):
            if isinstance(element, dict):
                _check_element(problems, element, f"{at}/elements/{i}")
    elif kind == "input" and isinstance(block.get("element"), dict):
        _check_element(problems, block["element"], f"{at}/element")


def _check_element(problems: list[str], element: dict[str, Any], at: str) -> None:
    kind = element.get("type")
    if kind == "button":
        if isinstance(element.get("text"), dict):
            _text(problems, element["text"], BUTTON_TEXT, f"{at}/text")
        _length(problems, element.get("value"), BUTTON_VALUE, f"{at}/value")
        _length(problems, element.get("url"), URL_CHARS, f"{at}/url")
    elif kind == "plain_text_input":
        _length(problems, element.get("initial_value"), INPUT_CHARS, f"{at}/initial_value")
        most = element.get("max_length")
        if isinstance(most, int) and most > INPUT_CHARS:
            problems.append(f"[ERROR] must be at most {INPUT_CHARS} [json-pointer:{at}/max_length]")
    elif kind == "static_select":
        options = element.get("options") or []
        if len(options) > OPTIONS:
            problems.append(_too_many(OPTIONS, f"{at}/options"))
        for i, option in enumerate(options):
            if isinstance(option, dict):
                if isinstance(option.get("text"), dict):
                    _text(problems, option["text"], OPTION_TEXT, f"{at}/options/{i}/text")
                _length(problems, option.get("value"), OPTION_VALUE, f"{at}/options/{i}/value")


def _text(problems: list[str], obj: dict[str, Any], most: int, at: str) -> None:
    _length(problems, obj.get("text"), most, f"{at}/text")


def _length(problems: list[str], value: Any, most: int, at: str) -> None:
    if isinstance(value, str) and len(value) > most:
        problems.append(_too_long(most, at))


def _too_long(most: int, at: str) -> str:
    return f"[ERROR] must be less than {most + 1} characters [json-pointer:{at}]"


def _too_many(most: int, at: str) -> str:
    return f"[ERROR] no more than {most} items allowed [json-pointer:{at}]"
